"""Revoking a device: its registration, then its live socket.

The registry deactivates the device (its token stops working, a webhook
event is queued); after that commits, the node holding its socket is told
to close it with 4403. A lost close event is made good by that node's next
heartbeat, which closes the sockets of revoked devices (devices.delivery.node).
"""

from django.db import transaction

from devices.delivery import wakeups
from devices.models import Device
from devices.registry import services as registry

CLOSE_REVOKED = 4403


def device_revoke(*, device: Device) -> None:
    """Revoke a device: its token stops working and its socket is closed."""
    node = device.node
    registry.device_deactivate(device=device)
    if node:
        device_id = device.pk
        transaction.on_commit(
            lambda: wakeups.close_device(node, device_id, CLOSE_REVOKED)
        )
