"""Read-side queries on devices and messages for the API and the admin.

Counts come from the delivery rows themselves, so they are exact under any
concurrency: there is no counter to drift.
"""

from typing import Any
from uuid import UUID

from django.db.models import Count, Q, QuerySet

from devices.models import OPEN_STATUSES, App, Delivery, DeliveryStatus, Device

STAT_NAMES = (
    "targeted",
    "sent",
    "delivered",
    "opened",
    "pending",
    "expired",
    "collapsed",
    "cancelled",
    "dropped",
)


def message_stats(message_id: Any) -> dict[str, int]:
    """Deliveries of a message by state. sent/delivered/opened count every
    delivery that reached that state (an opened one was also delivered);
    pending counts those still open (pending or sent, not yet acked)."""
    if message_id is None:
        return dict.fromkeys(STAT_NAMES, 0)
    return Delivery.objects.filter(message_id=message_id).aggregate(
        targeted=Count("pk"),
        sent=Count("pk", filter=Q(sent_at__isnull=False)),
        delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
        opened=Count("pk", filter=Q(opened_at__isnull=False)),
        pending=Count("pk", filter=Q(status__in=OPEN_STATUSES)),
        expired=Count("pk", filter=Q(status=DeliveryStatus.EXPIRED)),
        collapsed=Count("pk", filter=Q(status=DeliveryStatus.COLLAPSED)),
        cancelled=Count("pk", filter=Q(status=DeliveryStatus.CANCELLED)),
        dropped=Count("pk", filter=Q(status=DeliveryStatus.DROPPED)),
    )


def message_delivery(message_id: Any, device_id: UUID) -> Delivery | None:
    """One device's delivery of a message, or None if it was not targeted."""
    return Delivery.objects.filter(message_id=message_id, device_id=device_id).first()


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
