"""Where a message is: its deliveries counted by state, for the API and
the admin. Counts come from the delivery rows themselves, so they are exact
under any concurrency."""

from typing import Any
from uuid import UUID

from django.db.models import Count, Q

from devices.models import OPEN_STATUSES, Delivery, DeliveryStatus

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
