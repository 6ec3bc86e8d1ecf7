"""The device's own native-push endpoints, under /api/v1/ (docs/api.md)."""

from django.urls import path

from devices.native import api

urlpatterns = [
    path(
        "device/push-credentials",
        api.PushCredentialCollectionView.as_view(),
        name="device-push-credentials",
    ),
    path(
        "device/push-credentials/<str:kind>",
        api.PushCredentialItemView.as_view(),
        name="device-push-credential",
    ),
    path(
        "device/vapid-public-key",
        api.VapidPublicKeyView.as_view(),
        name="device-vapid-public-key",
    ),
    path("device/opened", api.OpenedView.as_view(), name="device-opened"),
]
