from django.urls import path

from devices.consumers import DeviceConsumer

websocket_urlpatterns = [
    path("ws/v1/device/", DeviceConsumer.as_asgi()),
]
