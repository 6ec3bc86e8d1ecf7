from django.urls import path

from devices.delivery.consumer import DeviceConsumer

websocket_urlpatterns = [
    path("ws/v1/device/", DeviceConsumer.as_asgi()),
]
