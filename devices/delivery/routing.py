from devices.delivery.consumer import DeviceConsumer

# Socket paths and their consumers (kpns_site/asgirouting.py).
websocket_consumers: dict[str, type] = {
    "ws/v1/device/": DeviceConsumer,
}
