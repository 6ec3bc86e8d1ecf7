"""Where a message is: its deliveries counted by state, for the API and
the admin. Read from the message's counters (devices.delivery.counters),
which move in the same transaction as the rows, so they are exact under any
concurrency and outlive the rows that retention deletes."""

from typing import Any
from uuid import UUID

from devices.delivery import counters
from devices.models import Delivery

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
    counts = counters.message_counts(message_id)
    closed = ("delivered", "expired", "collapsed", "cancelled", "dropped")
    # Every delivery is open or in exactly one closed state; an opened one
    # was delivered first, so "delivered" covers it.
    pending = counts["targeted"] - sum(counts[name] for name in closed)
    return {name: pending if name == "pending" else counts[name] for name in STAT_NAMES}


def message_delivery(message_id: Any, device_id: UUID) -> Delivery | None:
    """One device's delivery of a message, or None if it was not targeted."""
    return Delivery.objects.filter(message_id=message_id, device_id=device_id).first()
