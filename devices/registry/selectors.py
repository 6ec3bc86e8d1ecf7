"""Read-side queries on the devices of an app, for the API and the admin."""

from typing import Any
from uuid import UUID

from django.db.models import QuerySet

from devices.models import App, Device


def devices_of_app(app: App) -> QuerySet[Device]:
    """The app's registered (not revoked) devices, tags prefetched."""
    return Device.objects.filter(app=app, is_active=True).prefetch_related("tags")


def device_of_app(app: App, device_id: UUID) -> Device | None:
    """The app's registered device with this id; None for another app's."""
    return Device.objects.filter(app=app, is_active=True, pk=device_id).first()


def devices_filter(
    devices: QuerySet[Device],
    *,
    alias: str | None = None,
    tag: str | None = None,
    platform: str | None = None,
    online: bool | None = None,
) -> QuerySet[Device]:
    if alias is not None:
        devices = devices.filter(alias=alias)
    if tag is not None:
        devices = devices.filter(tags__name=tag)
    if platform is not None:
        devices = devices.filter(platform=platform)
    if online is not None:
        devices = devices.filter(node__isnull=not online)
    return devices


def presence(app: App, *, alias: str | None = None, limit: int = 100) -> dict[str, Any]:
    """How many of the app's devices are online now, and the first of them."""
    online = devices_filter(devices_of_app(app), alias=alias, online=True)
    return {
        "online": online.count(),
        "devices": list(
            online.order_by("-last_seen_at", "pk").values(
                "id", "alias", "platform", "last_seen_at"
            )[:limit]
        ),
    }
