from django.urls import path

from devices.api import events, keys, pushes, pushstream, recalls, views

urlpatterns = [
    # Device SDKs (client key, device token).
    path(
        "devices/register", views.DeviceRegisterView.as_view(), name="device-register"
    ),
    path("device", views.DeviceSelfView.as_view(), name="device-self"),
    path("device/key", keys.DeviceKeyView.as_view(), name="device-key"),
    path("device/events", events.MessageEventView.as_view(), name="device-events"),
    # Integrators' servers (API key).
    path("pushes", pushes.PushView.as_view(), name="api-pushes"),
    path("pushes/batch", pushes.PushBatchView.as_view(), name="api-pushes-batch"),
    path(
        "pushes/stream", pushstream.PushStreamView.as_view(), name="api-pushes-stream"
    ),
    path("devices", views.DeviceCollectionView.as_view(), name="api-devices"),
    path("device-keys", keys.KeyDirectoryView.as_view(), name="api-device-keys"),
    path(
        "device-keys/query",
        keys.KeyDirectoryQueryView.as_view(),
        name="api-device-keys-query",
    ),
    path("devices/<uuid:device_id>", views.DeviceItemView.as_view(), name="api-device"),
    path("presence", views.PresenceView.as_view(), name="api-presence"),
    path(
        "messages/<uuid:message_id>",
        views.MessageStatusView.as_view(),
        name="api-message",
    ),
    path(
        "messages/<uuid:message_id>/recall",
        recalls.MessageRecallView.as_view(),
        name="api-message-recall",
    ),
    path(
        "messages/<uuid:message_id>/update",
        recalls.MessageUpdateView.as_view(),
        name="api-message-update",
    ),
    path("webhooks", views.WebhookCollectionView.as_view(), name="api-webhooks"),
    path(
        "webhooks/<int:endpoint_id>",
        views.WebhookItemView.as_view(),
        name="api-webhook",
    ),
]
