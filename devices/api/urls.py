from django.urls import path

from devices.api import views
from devices.native import api as native_api

urlpatterns = [
    # Device SDKs (client key, device token).
    path(
        "devices/register", views.DeviceRegisterView.as_view(), name="device-register"
    ),
    path("device", views.DeviceSelfView.as_view(), name="device-self"),
    # Native push (devices/native/api.py).
    path(
        "device/push-credentials",
        native_api.PushCredentialCollectionView.as_view(),
        name="device-push-credentials",
    ),
    path(
        "device/push-credentials/<str:kind>",
        native_api.PushCredentialItemView.as_view(),
        name="device-push-credential",
    ),
    path(
        "device/vapid-public-key",
        native_api.VapidPublicKeyView.as_view(),
        name="device-vapid-public-key",
    ),
    # Integrators' servers (API key).
    path("devices", views.DeviceCollectionView.as_view(), name="api-devices"),
    path("devices/<uuid:device_id>", views.DeviceItemView.as_view(), name="api-device"),
    path("presence", views.PresenceView.as_view(), name="api-presence"),
    path(
        "messages/<uuid:message_id>",
        views.MessageStatusView.as_view(),
        name="api-message",
    ),
    path("webhooks", views.WebhookCollectionView.as_view(), name="api-webhooks"),
    path(
        "webhooks/<int:endpoint_id>",
        views.WebhookItemView.as_view(),
        name="api-webhook",
    ),
]
