"""The one write path of the delivery record: seqs and delivery rows.

Every delivery row is inserted here, by ``deliveries_write``, whoever sends:
a single API push, a batch, a campaign chunk, the admin's test push. It
gives each active device of the messages' app its next seqs, in plan order,
under the device rows' locks, and inserts one pending delivery per (message,
device) at that seq. The ordering guarantee rests on it
(docs/architecture.md, "The delivery record and the guarantee"); a property
test checks that every caller produces the rows a simple model predicts, on
PostgreSQL and on SQLite (tests/unit/test_write_path.py).

Two strategies behind the one function: PostgreSQL writes any number of
messages in two statements (one UPDATE bumping each device's seq by its count
of messages, one INSERT from arrays); other databases run an UPDATE ...
RETURNING and an INSERT ... SELECT per message. Building Delivery objects
through the ORM cost more than the statements (docs/benchmarks.md). The
messages' counters (devices.delivery.counters) move in the same
transaction: one more statement per write.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from devices.delivery.counters import Tally
from devices.delivery.sqlvalues import id_list_sql, in_values, pg_array
from devices.models import OPEN_STATUSES, Delivery, DeliveryStatus, Device, Message


@dataclass(frozen=True)
class Target:
    """A committed delivery that may be live on some node."""

    device_id: UUID
    seq: int
    delivery_id: int
    node: str | None


Plan = tuple[Message, Sequence[UUID]]


def deliveries_write(
    plans: Sequence[Plan],
    *,
    expires_at: datetime | None = None,
    skip_existing: bool = False,
) -> dict[UUID, list[Target]]:
    """Give each plan's saved message to its devices; targets by message id.

    Devices that are inactive or of another app are skipped. A device named
    by several messages gets them at consecutive seqs, in plan order. A
    message with a collapse key first marks the open deliveries of older
    messages with that key `collapsed` on the same devices.
    `skip_existing` skips devices that already have the message (a campaign
    chunk written again); messages saved in the caller's transaction cannot
    have any. `expires_at` overrides the messages' own expiry (campaign
    slices). Must run inside a transaction; wake the targets after it
    commits.
    """
    found: dict[UUID, list[Target]] = {message.pk: [] for message, _ids in plans}
    # Callers pass UUIDs or their text (an SDK's device id): one form, so
    # that the devices the database returns match the ones asked for.
    pk = Device._meta.pk
    assert pk is not None
    todo = [
        (m, list(dict.fromkeys(pk.to_python(i) for i in ids)))
        for m, ids in plans
        if ids
    ]
    if not todo:
        return found
    if len({m.app_id for m, _ids in todo}) != 1:
        raise ValueError("the messages of one write belong to one app")
    tally = Tally()
    # A message saved in the caller's transaction starts its counters at
    # zero; so does a campaign's before its first chunk. One that has rows
    # from before counters existed is counted on first read instead.
    had_rows = _with_rows([m.pk for m, _ids in todo]) if skip_existing else set()
    if connection.vendor == "postgresql" and not any(m.collapse_key for m, _ in todo):
        write = _write_arrays(todo, expires_at, skip_existing)
    else:
        write = {m.pk: _write_one(m, ids, expires_at, tally) for m, ids in todo}
    for message_id, targets in write.items():
        found[message_id] = sorted(targets, key=lambda t: t.seq)
        tally.inserted(message_id, len(targets), fresh=message_id not in had_rows)
    tally.apply()
    return found


def _with_rows(message_ids: list[UUID]) -> set[UUID]:
    """The messages that already have deliveries (one probe each)."""
    return {
        message_id
        for message_id in message_ids
        if Delivery.objects.filter(message_id=message_id).exists()
    }


def _write_arrays(
    plans: list[tuple[Message, list[UUID]]],
    expires_at: datetime | None,
    skip_existing: bool,
) -> dict[UUID, list[Target]]:
    """PostgreSQL: every message of the write in two statements."""
    if skip_existing:
        plans = _without_existing(plans)
    counts: dict[UUID, int] = defaultdict(int)
    for _message, ids in plans:
        for device_id in ids:
            counts[device_id] += 1
    found: dict[UUID, list[Target]] = {m.pk: [] for m, _ in plans}
    if not counts:
        return found
    device_table = connection.ops.quote_name(Device._meta.db_table)
    delivery_table = connection.ops.quote_name(Delivery._meta.db_table)
    ordered = sorted(counts)  # one lock order for every writer
    with connection.cursor() as cursor:
        # Only quoted table names and placeholders are interpolated.
        cursor.execute(
            f"UPDATE {device_table} d SET last_seq = d.last_seq + c.n "  # noqa: S608
            "FROM (SELECT unnest(%s::uuid[]) AS id, unnest(%s::int[]) AS n) c "
            "WHERE d.id = c.id AND d.app_id = %s AND d.is_active "
            "RETURNING d.id, d.last_seq, d.node",
            [
                pg_array(ordered),
                pg_array(counts[i] for i in ordered),
                plans[0][0].app_id,
            ],
        )
        bumped = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
        # Seqs handed out in plan order: last_seq - n + 1 ... last_seq.
        next_seq = {i: last - counts[i] + 1 for i, (last, _node) in bumped.items()}
        rows: list[tuple[Message, UUID, int]] = []
        for message, ids in plans:
            for device_id in ids:
                if device_id in next_seq:
                    rows.append((message, device_id, next_seq[device_id]))
                    next_seq[device_id] += 1
        if not rows:
            return found
        cursor.execute(
            f"INSERT INTO {delivery_table} "  # noqa: S608
            "(message_id, device_id, seq, status, created_at, expires_at) "
            "SELECT m, d, s, %s, %s, e FROM unnest("
            "%s::uuid[], %s::uuid[], %s::bigint[], %s::timestamptz[]) AS r(m, d, s, e) "
            "RETURNING id, message_id, device_id, seq",
            [
                DeliveryStatus.PENDING.value,
                timezone.now(),
                pg_array(m.pk for m, _d, _s in rows),
                pg_array(d for _m, d, _s in rows),
                pg_array(s for _m, _d, s in rows),
                pg_array(expires_at or m.expires_at for m, _d, _s in rows),
            ],
        )
        for row_id, message_id, device_id, seq in cursor.fetchall():
            found[message_id].append(
                Target(device_id, seq, row_id, node=bumped[device_id][1])
            )
    return found


def _without_existing(
    plans: list[tuple[Message, list[UUID]]],
) -> list[tuple[Message, list[UUID]]]:
    """Drop the devices that already have their plan's message."""
    have = set(
        Delivery.objects.filter(
            message_id__in=[m.pk for m, _ids in plans],
            device_id__in=in_values(
                sorted({i for _m, ids in plans for i in ids}), "uuid"
            ),
        ).values_list("message_id", "device_id")
    )
    if not have:
        return plans
    return [(m, [i for i in ids if (m.pk, i) not in have]) for m, ids in plans]


def _write_one(
    message: Message,
    device_ids: list[UUID],
    expires_at: datetime | None,
    tally: Tally,
) -> list[Target]:
    """One message: an UPDATE ... RETURNING and an INSERT (other databases,
    and messages with a collapse key, which must see the earlier ones)."""
    bumped = _bump_seqs(message, sorted(device_ids))
    if not bumped:
        return []
    ids = [device_id for device_id, _seq, _node in bumped]
    if message.collapse_key:
        _collapse_older(message, ids, tally)
    delivery_ids = _insert_at_seqs(message, ids, expires_at or message.expires_at)
    return [
        Target(device_id, seq, delivery_ids[device_id], node)
        for device_id, seq, node in bumped
    ]


def _bump_seqs(
    message: Message, device_ids: list[UUID]
) -> list[tuple[UUID, int, str | None]]:
    """Assign each device its next seq, under its row lock; skip repeats."""
    device_table = connection.ops.quote_name(Device._meta.db_table)
    delivery_table = connection.ops.quote_name(Delivery._meta.db_table)
    pk = Device._meta.pk
    message_pk = Message._meta.pk
    assert pk is not None and message_pk is not None
    id_sql, params = id_list_sql(device_ids)
    # Only quoted table names and placeholders are interpolated.
    sql = (
        f"UPDATE {device_table} SET last_seq = last_seq + 1 "  # noqa: S608
        f"WHERE {id_sql} AND app_id = %s AND is_active "
        f"AND NOT EXISTS (SELECT 1 FROM {delivery_table} d "
        f"WHERE d.device_id = {device_table}.id AND d.message_id = %s) "
        "RETURNING id, last_seq, node"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                *params,
                message.app_id,
                message_pk.get_db_prep_value(message.id, connection),
            ],
        )
        rows = cursor.fetchall()
    return [(pk.to_python(row[0]), row[1], row[2]) for row in rows]


def _insert_at_seqs(
    message: Message, device_ids: list[UUID], expires_at: datetime
) -> dict[UUID, int]:
    """INSERT ... SELECT the deliveries at the seqs just assigned."""
    device_table = connection.ops.quote_name(Device._meta.db_table)
    delivery_table = connection.ops.quote_name(Delivery._meta.db_table)
    pk = Device._meta.pk
    message_pk = Message._meta.pk
    assert pk is not None and message_pk is not None
    stamp = Delivery._meta.get_field("created_at")
    id_sql, params = id_list_sql(device_ids)
    # Only quoted table names and placeholders are interpolated.
    sql = (
        f"INSERT INTO {delivery_table} "  # noqa: S608
        "(message_id, device_id, seq, status, created_at, expires_at) "
        f"SELECT %s, id, last_seq, %s, %s, %s FROM {device_table} "
        f"WHERE {id_sql} RETURNING id, device_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                message_pk.get_db_prep_value(message.id, connection),
                DeliveryStatus.PENDING.value,
                stamp.get_db_prep_value(timezone.now(), connection),
                stamp.get_db_prep_value(expires_at, connection),
                *params,
            ],
        )
        return {
            pk.to_python(device_id): row_id for row_id, device_id in cursor.fetchall()
        }


def _collapse_older(message: Message, device_ids: list[UUID], tally: Tally) -> None:
    """A newer message with the same collapse key replaces the older ones
    that have not been delivered yet (locked in id order first)."""
    older = Delivery.objects.filter(
        Q(device_id__in=device_ids),
        status__in=OPEN_STATUSES,
        message__app_id=message.app_id,
        message__collapse_key=message.collapse_key,
    ).exclude(message=message)
    locked = older.select_for_update(of=("self",)).order_by("pk")
    ids = list(locked.values_list("pk", flat=True))
    if ids:
        rows = Delivery.objects.filter(pk__in=in_values(ids, "bigint"))
        tally.moving(rows, DeliveryStatus.COLLAPSED)
        rows.update(status=DeliveryStatus.COLLAPSED)
