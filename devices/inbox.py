"""The per-device inbox: messages, deliveries, sequence numbers and receipts.

Every function here runs in one database transaction and is the only place
that changes a delivery's status. The rules (docs/architecture.md,
docs/guarantees.md):

* a Delivery is committed, with the device's next ``seq``, before any frame
  is written; wake-ups are sent on commit;
* the device row is locked while a seq is assigned, so a device's seqs
  commit in order and a connecting device never misses one (see
  ``device_connect``);
* a device resumes from the last seq it processed: everything open above it
  is replayed in order, everything at or below it counts as delivered.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Min, Q
from django.db.models.expressions import Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from devices import dberrors, webhooks
from devices.conf import kpns_setting
from devices.models import (
    OPEN_STATUSES,
    App,
    Delivery,
    DeliveryStatus,
    Device,
    Message,
    Priority,
    WebhookEvent,
)
from devices.protocol import JSON, Push
from devices.sqlvalues import in_values, pg_array

MAX_TTL_SECONDS = 90 * 86400
# Devices per sweep query (pending_for_devices).
SWEEP_BATCH = 5000


@dataclass
class ConnectResult:
    db_last_seq: int
    replay: list[tuple[int, int, dict[str, Any]]]  # (seq, delivery id, push fields)
    resync: bool
    previous_node: str | None
    previous_connection: str | None


@dataclass
class Receipts:
    """Receipts gathered by a node between two flushes."""

    sent: list[int] = field(default_factory=list)  # delivery ids
    delivered: list[int] = field(default_factory=list)  # delivery ids
    opened: list[tuple[UUID, int, str]] = field(default_factory=list)
    acked_late: list[tuple[UUID, int, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sent or self.delivered or self.opened or self.acked_late)


def message_create(
    *,
    app: App,
    title: str,
    body: str = "",
    url: str = "",
    image: str = "",
    data: dict[str, Any] | None = None,
    priority: str = Priority.NORMAL,
    collapse_key: str = "",
    ttl_seconds: int | None = None,
) -> Message:
    message = message_build(
        app=app,
        title=title,
        body=body,
        url=url,
        image=image,
        data=data,
        priority=priority,
        collapse_key=collapse_key,
        ttl_seconds=ttl_seconds,
    )
    message.save()
    return message


def message_build(
    *,
    app: App,
    title: str,
    body: str = "",
    url: str = "",
    image: str = "",
    data: dict[str, Any] | None = None,
    priority: str = Priority.NORMAL,
    collapse_key: str = "",
    ttl_seconds: int | None = None,
) -> Message:
    """A checked, unsaved message (message_create saves it; batches bulk-insert)."""
    ttl = kpns_setting("DEFAULT_TTL_SECONDS") if ttl_seconds is None else ttl_seconds
    message = Message(
        app=app,
        title=title,
        body=body,
        url=url,
        image=image,
        data={} if data is None else data,
        priority=priority,
        collapse_key=collapse_key,
        expires_at=timezone.now() + timedelta(seconds=ttl),
    )
    if not 0 <= ttl <= MAX_TTL_SECONDS:
        raise ValidationError(
            {"ttl_seconds": [f"Between 0 and {MAX_TTL_SECONDS} seconds."]}
        )
    message_validate(message)
    return message


def push_fields(message: Message) -> dict[str, Any]:
    """The frame fields of a message except seq (devices.protocol.Push)."""
    return {
        "id": str(message.id),
        "title": message.title,
        "body": message.body,
        "url": message.url,
        "image": message.image,
        "data": message.data,
        "priority": message.priority,
        "collapse_key": message.collapse_key or None,
        "sent_at": _ms(message.created_at or timezone.now()),
        "expires_at": _ms(message.expires_at),
    }


@dataclass(frozen=True)
class ConnectRequest:
    device_id: UUID
    connection_id: str
    last_seq: int


def device_connect(
    *, device_id: UUID, node: str, connection_id: str, last_seq: int
) -> ConnectResult:
    """Mark one device online here and return what it must be replayed."""
    request = ConnectRequest(device_id, connection_id, last_seq)
    return devices_connect(node=node, requests=[request])[device_id]


def devices_connect(
    *, node: str, requests: list[ConnectRequest]
) -> dict[UUID, ConnectResult]:
    """Mark devices online here and return what each must be replayed.

    One transaction for a batch of hellos (the node gathers them for a few
    milliseconds): a reconnect storm costs a handful of statements per
    batch instead of per device.

    Presence is written first and under the device row lock: a concurrent
    enqueue either commits before this (and is replayed) or after (and sees
    this node in presence, so it wakes us).
    """
    return dberrors.retry_conflicts(
        lambda: _devices_connect(node, requests), what="connect"
    )


def _devices_connect(
    node: str, requests: list[ConnectRequest]
) -> dict[UUID, ConnectResult]:
    now = timezone.now()
    limit = kpns_setting("MAX_PENDING_PER_DEVICE")
    wanted = {r.device_id: r for r in requests}
    ids = sorted(wanted)
    with transaction.atomic():
        devices = {
            d.pk: d
            for d in Device.objects.select_for_update()
            .filter(pk__in=in_values(ids, "uuid"))
            .order_by("pk")
            .only("node", "connection_id", "last_seq", "acked_seq")
        }
        resume = {
            pk: max(0, min(wanted[pk].last_seq, d.last_seq))
            for pk, d in devices.items()
        }
        _presence_set(node, now, devices, wanted, resume)
        # One read of the open deliveries (a small partial index) decides the
        # rest; devices with nothing pending cost no further statement.
        open_rows: dict[UUID, list[tuple[int, int, datetime, UUID]]] = {}
        for row_pk, device_id, seq, expires, message_id in (
            Delivery.objects.filter(
                device_id__in=in_values(list(devices), "uuid"), status__in=OPEN_STATUSES
            )
            .order_by("device_id", "seq")
            .values_list("pk", "device_id", "seq", "expires_at", "message_id")
        ):
            open_rows.setdefault(device_id, []).append(
                (row_pk, seq, expires, message_id)
            )
        done: list[int] = []
        expired: list[int] = []
        dropped: list[int] = []
        live_by_device: dict[UUID, list[tuple[int, int, datetime, UUID]]] = {}
        maybe_gap: list[UUID] = []
        gaps: set[UUID] = set()
        for pk, device in devices.items():
            rows = open_rows.get(pk, [])
            at = resume[pk]
            # The app says it processed everything up to `at`: its acks for
            # those were lost on the way, so they count as delivered.
            done += [row[0] for row in rows if row[1] <= at]
            expired += [row[0] for row in rows if row[1] > at and row[2] <= now]
            live = [row for row in rows if row[1] > at and row[2] > now]
            cut = live[: max(0, len(live) - limit)]
            dropped += [row[0] for row in cut]
            live_by_device[pk] = live[len(cut) :]
            above = sum(1 for row in rows if row[1] > at)
            if cut:
                gaps.add(pk)
            elif above < device.last_seq - at:
                # Seqs above `at` that are no longer open may include
                # dropped ones; only then is the resync check worth a query.
                maybe_gap.append(pk)
        # Rows read above may have moved on since (a receipt of the old
        # socket): lock them in the one order, change only what is open.
        deliveries_lock(ids=done + expired + dropped)
        still_open = Q(status__in=OPEN_STATUSES)
        if done:
            acked = Delivery.objects.filter(
                still_open, pk__in=in_values(done, "bigint")
            )
            # Rare (acks lost on the way): only then ask who listens.
            watch = _WebhookWatch.start(WebhookEvent.MESSAGE_DELIVERED)
            if watch is not None:
                watch.note(acked, WebhookEvent.MESSAGE_DELIVERED)
            acked.update(**_delivered(now))
            if watch is not None:
                watch.emit(now)
        if expired:
            Delivery.objects.filter(
                still_open, pk__in=in_values(expired, "bigint")
            ).update(status=DeliveryStatus.EXPIRED)
        if dropped:
            Delivery.objects.filter(
                still_open, pk__in=in_values(dropped, "bigint")
            ).update(status=DeliveryStatus.DROPPED)
        for pk in maybe_gap:
            if Delivery.objects.filter(
                device_id=pk, status=DeliveryStatus.DROPPED, seq__gt=resume[pk]
            ).exists():
                gaps.add(pk)
        message_ids = {row[3] for rows in live_by_device.values() for row in rows}
        messages = Message.objects.in_bulk(message_ids)
        fields = {mid: push_fields(message) for mid, message in messages.items()}
    return {
        pk: ConnectResult(
            db_last_seq=device.last_seq,
            replay=[
                (seq, row_pk, fields[mid])
                for row_pk, seq, _e, mid in live_by_device[pk]
            ],
            resync=pk in gaps,
            previous_node=device.node,
            previous_connection=device.connection_id,
        )
        for pk, device in devices.items()
    }


def _presence_set(
    node: str,
    now: datetime,
    devices: dict[UUID, Device],
    wanted: dict[UUID, ConnectRequest],
    resume: dict[UUID, int],
) -> None:
    """Write presence and the acked position of every connecting device."""
    if connection.vendor == "postgresql" and len(devices) > 1:
        ids = list(devices)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE devices_device AS d SET node = %s, last_seen_at = %s, "
                "connection_id = v.conn, acked_seq = GREATEST(d.acked_seq, v.at) "
                "FROM unnest(%s::uuid[], %s::text[], %s::bigint[]) AS v(id, conn, at) "
                "WHERE d.id = v.id",
                [
                    node,
                    now,
                    pg_array(ids),
                    [wanted[pk].connection_id for pk in ids],
                    pg_array(resume[pk] for pk in ids),
                ],
            )
        return
    for pk, device in devices.items():
        Device.objects.filter(pk=pk).update(
            node=node,
            connection_id=wanted[pk].connection_id,
            last_seen_at=now,
            acked_seq=max(device.acked_seq, resume[pk]),
        )


def open_deliveries_after(
    *, device_id: UUID, after_seq: int, limit: int
) -> list[tuple[int, int, dict[str, Any]]]:
    """Open deliveries above a seq, in order: what a connection must catch up."""
    rows = (
        Delivery.objects.filter(
            device_id=device_id,
            status__in=OPEN_STATUSES,
            seq__gt=after_seq,
            expires_at__gt=timezone.now(),
        )
        .select_related("message")
        .order_by("seq")[:limit]
    )
    return [(d.seq, d.pk, push_fields(d.message)) for d in rows]


def pending_for_devices(
    *, device_ids: list[UUID], older_than: datetime, limit: int
) -> dict[UUID, int]:
    """Of these devices (a node's live sessions), those with a pending
    delivery older than a moment, with their lowest pending seq. Used by
    the node's sweep to recover wake-ups that the channel layer lost.

    Driven by the device ids, one probe of the open-deliveries index each,
    so its cost follows the node's sessions and not the size of the
    backlog: joining on the devices' node column let PostgreSQL scan every
    open delivery (4.3 s with a million-device campaign queued, every
    second on every node: heartbeats stalled and nodes judged each other
    dead, docs/benchmarks.md).
    """
    lowest: dict[UUID, int] = {}
    now = timezone.now()
    for start in range(0, len(device_ids), SWEEP_BATCH):
        if len(lowest) >= limit:
            break
        rows = (
            Delivery.objects.filter(
                device_id__in=in_values(
                    device_ids[start : start + SWEEP_BATCH], "uuid"
                ),
                status=DeliveryStatus.PENDING,
                created_at__lt=older_than,
                expires_at__gt=now,
            )
            .order_by("device_id", "seq")
            .values_list("device_id", "seq")[:limit]
        )
        for device_id, seq in rows:
            lowest.setdefault(device_id, seq)
    return lowest


def delivery_id_high_water() -> int:
    """The highest delivery id committed so far (0 for an empty table)."""
    row = Delivery.objects.order_by("-pk").values_list("pk", flat=True).first()
    return row or 0


def pending_on_node_since(
    *, node: str, after_id: int, older_than: datetime, limit: int
) -> dict[UUID, int]:
    """Devices present on `node` with a pending delivery of id above
    `after_id` created before `older_than`, with their lowest pending seq.

    The node's incremental sweep: its cost follows the deliveries created
    since the last sweeps (a range of the primary key), not the node's
    sessions or the backlog of offline devices, so it can run every
    second at 20,000 sockets per process.
    """
    rows = (
        Delivery.objects.filter(
            pk__gt=after_id,
            status=DeliveryStatus.PENDING,
            created_at__lt=older_than,
            expires_at__gt=timezone.now(),
            device__node=node,
        )
        .values("device_id")
        .annotate(lowest=Min("seq"))
        .values_list("device_id", "lowest")[:limit]
    )
    return dict(rows)


def device_disconnect(*, device_id: UUID, connection_id: str) -> bool:
    """Mark the device offline unless a newer socket has taken over."""
    return devices_disconnect(pairs=[(device_id, connection_id)]) == 1


def devices_disconnect(*, pairs: list[tuple[UUID, str]]) -> int:
    """Mark devices offline, each unless a newer socket has taken over.

    One statement on PostgreSQL for any number of (device, connection):
    a mass disconnect (a network blip) wrote one UPDATE per socket, one
    after the other on the event loop's ORM thread.
    """
    now = timezone.now()
    if connection.vendor == "postgresql" and len(pairs) > 1:
        table = connection.ops.quote_name(Device._meta.db_table)
        ordered = sorted(pairs)  # the devices' one lock order
        with connection.cursor() as cursor:
            # Only the quoted table name is interpolated.
            cursor.execute(
                f"UPDATE {table} d SET node = NULL, connection_id = NULL, "  # noqa: S608
                "last_seen_at = %s "
                "FROM unnest(%s::uuid[], %s::text[]) AS v(id, conn) "
                "WHERE d.id = v.id AND d.connection_id = v.conn",
                [now, pg_array(d for d, _c in ordered), [c for _d, c in ordered]],
            )
            gone: int = cursor.rowcount
            return gone
    gone = 0
    for device_id, connection_id in pairs:
        gone += Device.objects.filter(pk=device_id, connection_id=connection_id).update(
            node=None, connection_id=None, last_seen_at=now
        )
    return gone


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
    with transaction.atomic():
        deliveries_lock(
            ids=[*receipts.sent, *receipts.delivered],
            keyed=_keyed_filter(keyed) if keyed else None,
        )
        watch = None
        if receipts.delivered or receipts.acked_late or receipts.opened:
            watch = _WebhookWatch.start(
                WebhookEvent.MESSAGE_DELIVERED, WebhookEvent.MESSAGE_OPENED
            )
        if receipts.sent:
            Delivery.objects.filter(
                pk__in=in_values(receipts.sent, "bigint"), status=DeliveryStatus.PENDING
            ).update(status=DeliveryStatus.SENT, sent_at=now)
        if receipts.delivered:
            acked = Delivery.objects.filter(
                pk__in=in_values(receipts.delivered, "bigint"), status__in=OPEN_STATUSES
            )
            if watch is not None:
                watch.note(acked, WebhookEvent.MESSAGE_DELIVERED)
            acked.update(**_delivered(now))
        for device_id, seqs in _by_device(receipts.acked_late).items():
            late = _filter_seqs(device_id, seqs).filter(status__in=OPEN_STATUSES)
            if watch is not None:
                watch.note(late, WebhookEvent.MESSAGE_DELIVERED)
            late.update(**_delivered(now))
        for device_id, seqs in _by_device(receipts.opened).items():
            matching = _filter_seqs(device_id, seqs).exclude(
                status=DeliveryStatus.OPENED
            )
            unacked = matching.filter(delivered_at__isnull=True)
            if watch is not None:
                watch.note(unacked, WebhookEvent.MESSAGE_DELIVERED)
                watch.note(matching, WebhookEvent.MESSAGE_OPENED)
            unacked.update(**_delivered(now))
            matching.update(status=DeliveryStatus.OPENED, opened_at=now)
        if watch is not None:
            watch.emit(now)


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


class _WebhookWatch:
    """Deliveries moving to delivered/opened in this transaction, for the
    apps that subscribe to those events (devices.webhooks)."""

    def __init__(self, apps: dict[int, set[str]]) -> None:
        self.apps = apps
        self.rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)

    @classmethod
    def start(cls, *events: str) -> "_WebhookWatch | None":
        apps = webhooks.subscriptions(events)
        return cls(apps) if apps else None

    def note(self, deliveries: Any, event: str) -> None:
        """Read the rows about to change (call before the UPDATE)."""
        apps = [app_id for app_id, names in self.apps.items() if event in names]
        if apps:
            self.rows[event] += deliveries.filter(message__app_id__in=apps).values_list(
                "message__app_id", "message_id", "device_id", "device__alias", "seq"
            )

    def emit(self, now: datetime) -> None:
        for event, rows in self.rows.items():
            webhooks.delivery_events(rows, event, now)


def deliveries_cancel(*, message_id: Any) -> int:
    """Cancel every delivery of a message not yet confirmed by its device.

    In id-ordered chunks (deliveries_lock), so a cancel never deadlocks
    with receipts being written for the same rows.
    """
    cancelled = 0
    after = 0
    with transaction.atomic():
        while True:
            chunk = _open_ids(Q(message_id=message_id), after=after)
            if not chunk:
                return cancelled
            cancelled += Delivery.objects.filter(
                pk__in=in_values(chunk, "bigint"), status__in=OPEN_STATUSES
            ).update(status=DeliveryStatus.CANCELLED)
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
            expired += Delivery.objects.filter(
                pk__in=in_values(ids, "bigint"), status__in=OPEN_STATUSES
            ).update(status=DeliveryStatus.EXPIRED)
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


def presence_restore(*, node: str, live: list[tuple[UUID, str]]) -> int:
    """Mark these (device, connection) online on the node again, where no
    other connection took them meanwhile. Returns how many were restored.

    One statement on PostgreSQL: a node judged dead while overloaded holds
    thousands of sockets, and one UPDATE each kept it busy long enough to be
    judged dead again."""
    if not live:
        return 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(Device._meta.db_table)
            with connection.cursor() as cursor:
                # Only the quoted table name is interpolated.
                cursor.execute(
                    f"UPDATE {table} d SET node = %s, connection_id = c.conn "  # noqa: S608
                    "FROM unnest(%s::uuid[], %s::text[]) AS c(id, conn) "
                    "WHERE d.id = c.id AND d.node IS NULL",
                    [node, pg_array(d for d, _c in live), [c for _d, c in live]],
                )
                restored: int = cursor.rowcount
                return restored
        restored = 0
        for device_id, connection_id in live:
            offline = Device.objects.filter(pk=device_id, node__isnull=True)
            restored += offline.update(node=node, connection_id=connection_id)
        return restored


def presence_clear_nodes(*, nodes: Iterable[str]) -> int:
    """Mark every device held by these (dead) nodes offline."""
    return Device.objects.filter(node__in=list(nodes)).update(
        node=None, connection_id=None
    )


def _delivered(now: datetime) -> dict[str, Any]:
    # A receipt can overtake the "sent" one; delivered implies sent.
    return {
        "status": DeliveryStatus.DELIVERED,
        "delivered_at": now,
        "sent_at": Coalesce(F("sent_at"), Value(now)),
    }


def _by_device(items: list[tuple[UUID, int, str]]) -> dict[UUID, list[tuple[int, str]]]:
    grouped: dict[UUID, list[tuple[int, str]]] = defaultdict(list)
    for device_id, seq, message_id in items:
        grouped[device_id].append((seq, message_id))
    return grouped


def _keyed_filter(items: list[tuple[UUID, int, str]]) -> Q:
    """Rows named by (device, seq, message id), as the device named them."""
    query = Q()
    for device_id, seq, message_id in items:
        query |= Q(device_id=device_id, seq=seq, message_id=message_id)
    return query


def _filter_seqs(device_id: UUID, seqs: list[tuple[int, str]]) -> Any:
    # The message id must match the seq: a device cannot touch a delivery by
    # guessing a seq, and ids of other devices' messages match nothing.
    query = Q()
    for seq, message_id in seqs:
        query |= Q(seq=seq, message_id=message_id)
    return Delivery.objects.filter(query, device_id=device_id)


def message_validate(message: Message) -> None:
    """Check content and payload size; ValidationError names the field."""
    errors: dict[str, list[str]] = {}
    if not message.title.strip():
        errors["title"] = ["A title is required."]
    if not isinstance(message.data, dict):
        errors["data"] = ["Must be a JSON object."]
    elif _holds_nul(message.data):
        # PostgreSQL's jsonb cannot store U+0000 (it was a 503).
        errors["data"] = ["Strings cannot contain the NUL character (U+0000)."]
    if message.priority not in Priority.values:
        errors["priority"] = [f"One of {', '.join(Priority.values)}."]
    if not errors:
        try:
            encoded = JSON.encode(Push(seq=0, **push_fields(message)))
            assert isinstance(encoded, str)  # the JSON codec writes text frames
            size = len(encoded.encode())
        except ValueError as exc:
            errors["data"] = [f"Not sendable as JSON: {exc}"]
        else:
            limit = kpns_setting("MAX_PAYLOAD_BYTES")
            if size > limit:
                errors["__all__"] = [
                    f"The payload is {size} bytes; the limit is {limit}."
                ]
    if errors:
        raise ValidationError(errors)


def _holds_nul(value: Any) -> bool:
    # Iterative: data 500 deep overflowed the stack here (a 500). The API's
    # parser bounds nesting, but the admin and services call this too.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
