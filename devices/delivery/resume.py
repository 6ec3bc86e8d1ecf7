"""A device connecting and leaving: presence, and what it is replayed.

A device resumes from the last seq it processed: everything open above it
is replayed in order, everything at or below it counts as delivered. The
device row is locked while presence is written, as during seq assignment
(devices.delivery.enqueue), so a connecting device never misses a seq
(docs/architecture.md, "Presence race").
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery import dberrors
from devices.delivery.counters import Tally
from devices.delivery.messages import push_fields
from devices.delivery.receipts import (
    WebhookWatch,
    deliveries_acked,
    deliveries_lock,
)
from devices.delivery.sqlvalues import in_values, pg_array
from devices.models import (
    OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
    Device,
    Message,
    WebhookEvent,
)


@dataclass
class ConnectResult:
    db_last_seq: int
    replay: list[tuple[int, int, dict[str, Any]]]  # (seq, delivery id, push fields)
    resync: bool
    previous_node: str | None
    previous_connection: str | None


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
        tally = Tally()
        if done:
            acked = Delivery.objects.filter(
                still_open, pk__in=in_values(done, "bigint")
            )
            # Rare (acks lost on the way): only then ask who listens.
            watch = WebhookWatch.start(WebhookEvent.MESSAGE_DELIVERED)
            if watch is not None:
                watch.note(acked, WebhookEvent.MESSAGE_DELIVERED)
            deliveries_acked(acked, now=now, tally=tally)
            if watch is not None:
                watch.emit(now)
        for closed, status in (
            (expired, DeliveryStatus.EXPIRED),
            (dropped, DeliveryStatus.DROPPED),
        ):
            if closed:
                closing = Delivery.objects.filter(
                    still_open, pk__in=in_values(closed, "bigint")
                )
                tally.moving(closing, status)
                closing.update(status=status)
        tally.apply()
        if maybe_gap:
            # One grouped query for the batch: an app that lost its state
            # says hello 0, and a query per such device made a reconnect
            # storm wait on 20,000 round trips (docs/benchmarks.md).
            for pk, top in (
                Delivery.objects.filter(
                    device_id__in=in_values(maybe_gap, "uuid"),
                    status=DeliveryStatus.DROPPED,
                )
                .values_list("device_id")
                .annotate(top=Max("seq"))
                .order_by()
            ):
                if top > resume[pk]:
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


def device_disconnect(*, device_id: UUID, connection_id: str) -> bool:
    """Mark the device offline unless a newer socket has taken over."""
    return devices_disconnect(pairs=[(device_id, connection_id)]) == 1


def devices_disconnect(
    *, pairs: list[tuple[UUID, str]], closed_badly: list[UUID] | None = None
) -> int:
    """Mark devices offline, each unless a newer socket has taken over.

    One statement on PostgreSQL for any number of (device, connection):
    a mass disconnect (a network blip) wrote one UPDATE per socket, one
    after the other on the event loop's ORM thread. Devices the server
    closed 4429 or 4400 (`closed_badly`, rare) get their bad_close_at in
    one more statement, whichever socket holds them now.
    """
    now = timezone.now()
    if closed_badly:
        Device.objects.filter(pk__in=sorted(set(closed_badly))).update(bad_close_at=now)
    pairs = [pair for pair in pairs if pair[1]]
    if not pairs:
        return 0
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
