"""The only code that moves a delivery's status after it is written.

Receipts (sent, delivered, opened) only move forward; cancel and expiry
close what is still open. Every transaction that changes several
deliveries locks them first in id order (``deliveries_lock``), so no two
can deadlock (docs/architecture.md, "One lock order for deliveries").
Webhook events for what moved are queued, and the message counters
(devices.delivery.counters) moved, in the same transaction.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.expressions import Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from devices.delivery import dberrors
from devices.delivery.counters import Tally
from devices.delivery.sqlvalues import in_values
from devices.integrations import webhooks
from devices.models import (
    OPEN_STATUSES,
    Control,
    Delivery,
    DeliveryStatus,
    WebhookEvent,
)


@dataclass
class Receipts:
    """Receipts gathered by a node between two flushes."""

    sent: list[int] = field(default_factory=list)  # delivery ids
    delivered: list[int] = field(default_factory=list)  # delivery ids
    opened: list[tuple[UUID, int, str]] = field(default_factory=list)
    acked_late: list[tuple[UUID, int, str]] = field(default_factory=list)
    # What carried these to the device, in message.delivered / opened
    # webhooks: a node's receipts came over sockets; a device reporting
    # through the API names a native channel (devices.native.services).
    channel: str = "socket"

    def __bool__(self) -> bool:
        return bool(self.sent or self.delivered or self.opened or self.acked_late)


def receipts_record(receipts: Receipts) -> None:
    """Write a batch of receipts in one transaction.

    Transitions only move forward (pending -> sent -> delivered -> opened),
    so a late or repeated receipt never undoes a newer state. Webhook events
    for the deliveries that move to delivered or opened are queued in the
    same transaction, and only for apps that subscribe to them: with no
    subscriber a batch costs one small extra query.

    Every row the batch changes is locked first, in id order, by one
    statement (deliveries_lock): two processes writing receipts for the same
    device (its old node's "sent", its new node's "delivered") deadlocked
    when each UPDATE locked its rows in its own order. A conflict that
    happens anyway is retried, never reported as an outage.
    """
    dberrors.retry_conflicts(lambda: _receipts_write(receipts), what="receipts")


def _receipts_write(receipts: Receipts) -> None:
    now = timezone.now()
    keyed = receipts.acked_late + receipts.opened
    tally = Tally()
    with transaction.atomic():
        deliveries_lock(
            ids=[*receipts.sent, *receipts.delivered],
            keyed=keyed_filter(keyed) if keyed else None,
        )
        watch = None
        if receipts.delivered or receipts.acked_late or receipts.opened:
            watch = WebhookWatch.start(
                WebhookEvent.MESSAGE_DELIVERED, WebhookEvent.MESSAGE_OPENED
            )
        if receipts.sent:
            unsent = Delivery.objects.filter(
                pk__in=in_values(receipts.sent, "bigint"), status=DeliveryStatus.PENDING
            )
            tally.moving(unsent, DeliveryStatus.SENT)
            unsent.update(status=DeliveryStatus.SENT, sent_at=now)
        if receipts.delivered:
            acked = Delivery.objects.filter(
                pk__in=in_values(receipts.delivered, "bigint"), status__in=OPEN_STATUSES
            )
            if watch is not None:
                watch.note(acked, WebhookEvent.MESSAGE_DELIVERED)
            deliveries_acked(acked, now=now, tally=tally)
        for device_id, seqs in by_device(receipts.acked_late).items():
            late = filter_seqs(device_id, seqs).filter(status__in=OPEN_STATUSES)
            if watch is not None:
                watch.note(late, WebhookEvent.MESSAGE_DELIVERED)
            deliveries_acked(late, now=now, tally=tally)
        for device_id, seqs in by_device(receipts.opened).items():
            matching = filter_seqs(device_id, seqs).exclude(
                status=DeliveryStatus.OPENED
            )
            unacked = matching.filter(delivered_at__isnull=True)
            if watch is not None:
                watch.note(unacked, WebhookEvent.MESSAGE_DELIVERED)
                watch.note(matching, WebhookEvent.MESSAGE_OPENED)
            deliveries_acked(unacked, now=now, tally=tally)
            tally.moving(matching, DeliveryStatus.OPENED)
            matching.update(status=DeliveryStatus.OPENED, opened_at=now)
        if watch is not None:
            watch.emit(now, channel=receipts.channel)
        tally.apply()


def deliveries_acked(rows: Any, *, now: datetime, tally: Tally) -> None:
    """Mark `rows` (locked) delivered, counted in `tally`."""
    tally.moving(rows, DeliveryStatus.DELIVERED, stamps_sent=True, now=now)
    rows.update(**delivered_fields(now))


def deliveries_lock(*, ids: Sequence[int], keyed: Q | None = None) -> list[int]:
    """Lock delivery rows in id order, in one statement; returns their ids.

    The one lock order for delivery rows (docs/architecture.md): every
    transaction that changes several deliveries takes all of their locks
    here first, after any device row locks. Statements that then change
    them wait for nothing more, so two such transactions cannot deadlock.
    SQLite serializes writers and needs no row locks.
    """
    if connection.vendor != "postgresql" or not (ids or keyed):
        return list(ids)
    where = Q(pk__in=in_values(sorted(set(ids)), "bigint")) if ids else Q()
    if keyed is not None:
        where = (where | keyed) if ids else keyed
    return list(
        Delivery.objects.select_for_update()
        .filter(where)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# A device acknowledging a recall or an update is reported as that, about
# the message it changes, not as the delivery of the control message.
CONTROL_ACK_EVENTS = {
    Control.RECALL: WebhookEvent.MESSAGE_RECALLED,
    Control.UPDATE: WebhookEvent.MESSAGE_UPDATED,
}


class WebhookWatch:
    """Deliveries moving to delivered/opened in this transaction, for the
    apps that subscribe to those events (devices.webhooks)."""

    def __init__(self, apps: dict[int, set[str]]) -> None:
        self.apps = apps
        self.rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)

    @classmethod
    def start(cls, *events: str) -> "WebhookWatch | None":
        if WebhookEvent.MESSAGE_DELIVERED in events:
            events = (*events, *CONTROL_ACK_EVENTS.values())
        apps = webhooks.subscriptions(events)
        return cls(apps) if apps else None

    def note(self, deliveries: Any, event: str) -> None:
        """Read the rows about to change (call before the UPDATE)."""
        if event == WebhookEvent.MESSAGE_DELIVERED:
            for kind, acked in CONTROL_ACK_EVENTS.items():
                self._note(
                    deliveries.filter(message__control=kind),
                    acked,
                    ("message__control_of_id", "message_id"),
                )
            deliveries = deliveries.filter(message__control="")
        self._note(deliveries, event, ("message_id",))

    def _note(self, deliveries: Any, event: str, ids: tuple[str, ...]) -> None:
        apps = [app_id for app_id, names in self.apps.items() if event in names]
        if apps:
            self.rows[event] += deliveries.filter(message__app_id__in=apps).values_list(
                "message__app_id", ids[0], "device_id", "device__alias", "seq", *ids[1:]
            )

    def emit(self, now: datetime, channel: str = "socket") -> None:
        for event, rows in self.rows.items():
            webhooks.delivery_events(rows, event, now, channel=channel)


def deliveries_cancel(*, message_id: Any) -> int:
    """Cancel every delivery of a message not yet confirmed by its device.

    In id-ordered chunks (deliveries_lock), so a cancel never deadlocks
    with receipts being written for the same rows.
    """
    cancelled = 0
    after = 0
    tally = Tally()
    with transaction.atomic():
        while True:
            chunk = _open_ids(Q(message_id=message_id), after=after)
            if not chunk:
                tally.apply()
                return cancelled
            rows = Delivery.objects.filter(
                pk__in=in_values(chunk, "bigint"), status__in=OPEN_STATUSES
            )
            tally.moving(rows, DeliveryStatus.CANCELLED)
            cancelled += rows.update(status=DeliveryStatus.CANCELLED)
            after = chunk[-1]


# Rows one expiry statement changes: a bounded transaction, however large
# the backlog that expired at once (a million-device campaign's TTL).
EXPIRE_BATCH = 10_000


def expire_due(*, now: datetime | None = None, limit: int = 100_000) -> int:
    """Mark open deliveries whose TTL passed as expired; at most `limit`.

    Batches of EXPIRE_BATCH rows in id order, skipping rows another
    transaction holds (receipts for them are being written: their device
    has them, or the next run expires them).
    """
    moment = now or timezone.now()
    expired = 0
    while expired < limit:
        with transaction.atomic():
            ids = _open_ids(
                Q(expires_at__lte=moment),
                batch=min(EXPIRE_BATCH, limit - expired),
                skip_locked=True,
            )
            if not ids:
                break
            rows = Delivery.objects.filter(
                pk__in=in_values(ids, "bigint"), status__in=OPEN_STATUSES
            )
            tally = Tally()
            tally.moving(rows, DeliveryStatus.EXPIRED)
            expired += rows.update(status=DeliveryStatus.EXPIRED)
            tally.apply()
        if len(ids) < EXPIRE_BATCH:
            break
    return expired


def _open_ids(
    where: Q, *, after: int = 0, batch: int = EXPIRE_BATCH, skip_locked: bool = False
) -> list[int]:
    """Ids of open deliveries matching `where`, locked in id order."""
    return list(
        Delivery.objects.select_for_update(skip_locked=skip_locked)
        .filter(where, status__in=OPEN_STATUSES, pk__gt=after)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch]
    )


def delivered_fields(now: datetime) -> dict[str, Any]:
    # A receipt can overtake the "sent" one; delivered implies sent.
    return {
        "status": DeliveryStatus.DELIVERED,
        "delivered_at": now,
        "sent_at": Coalesce(F("sent_at"), Value(now)),
    }


def by_device(items: list[tuple[UUID, int, str]]) -> dict[UUID, list[tuple[int, str]]]:
    grouped: dict[UUID, list[tuple[int, str]]] = defaultdict(list)
    for device_id, seq, message_id in items:
        grouped[device_id].append((seq, message_id))
    return grouped


def keyed_filter(items: list[tuple[UUID, int, str]]) -> Q:
    """Rows named by (device, seq, message id), as the device named them."""
    query = Q()
    for device_id, seq, message_id in items:
        query |= Q(device_id=device_id, seq=seq, message_id=message_id)
    return query


def filter_seqs(device_id: UUID, seqs: list[tuple[int, str]]) -> Any:
    # The message id must match the seq: a device cannot touch a delivery by
    # guessing a seq, and ids of other devices' messages match nothing.
    query = Q()
    for seq, message_id in seqs:
        query |= Q(seq=seq, message_id=message_id)
    return Delivery.objects.filter(query, device_id=device_id)
