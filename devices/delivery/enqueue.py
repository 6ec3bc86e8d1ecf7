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
messages in one statement (an UPDATE bumping each device's seq by its count
of messages, whose RETURNING feeds the INSERT from arrays; new messages'
rows and counters in the same statement); other databases run an UPDATE ...
RETURNING and an INSERT ... SELECT per message. Building Delivery objects
through the ORM cost more than the statements (docs/benchmarks.md). The
messages' counters (devices.delivery.counters) move in the same
transaction: one more statement per write of existing messages.
"""

import json
import operator
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from devices.delivery.counters import BASE_SHARD, COLUMNS, COUNT_SHARDS, Tally
from devices.delivery.sqlvalues import id_list_sql, in_values, pg_array
from devices.models import (
    OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
    Device,
    Message,
    MessageCount,
)


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
    new_messages: bool = False,
) -> dict[UUID, list[Target]]:
    """Give each plan's saved message to its devices; targets by message id.

    Devices that are inactive or of another app are skipped. A device named
    by several messages gets them at consecutive seqs, in plan order. A
    message with a collapse key first marks the open deliveries of older
    messages with that key `collapsed` on the same devices.
    `skip_existing` skips devices that already have the message (a campaign
    chunk written again); messages saved in the caller's transaction cannot
    have any. `expires_at` overrides the messages' own expiry (campaign
    slices). `new_messages`: the messages are checked but unsaved, and are
    saved here, with their counters (on PostgreSQL in the same statement as
    their deliveries: one round trip, atomic without a transaction of its
    own). Otherwise it must run inside a transaction. Wake the targets after
    the commit.
    """
    if new_messages:
        return _write_new(plans)
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
    """The messages that already have deliveries: one query, an index probe
    per message (a query per message was 7 of a personalised chunk's 13 s
    with 2,000 messages, docs/benchmarks.md)."""
    if connection.vendor == "postgresql":
        # A LIMIT 1 probe per message: as a semi-join PostgreSQL read the
        # whole index range of a message with a million rows (20 ms a
        # chunk; this is 0.1 ms).
        sql = (
            "SELECT m.id FROM unnest(%s::uuid[]) AS m(id) CROSS JOIN LATERAL "  # noqa: S608
            f"(SELECT 1 FROM {_table(Delivery)} d WHERE d.message_id = m.id "
            "LIMIT 1) AS probe"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [pg_array(message_ids)])
            return {row[0] for row in cursor.fetchall()}
    has_rows = Exists(Delivery.objects.filter(message_id=OuterRef("pk")))
    found = Message.objects.filter(has_rows, pk__in=message_ids)
    return set(found.values_list("pk", flat=True))


def _write_new(plans: Sequence[Plan]) -> dict[UUID, list[Target]]:
    """Unsaved messages, their deliveries and their counters."""
    if not plans:
        return {}
    now = timezone.now()
    for message, _ids in plans:
        message.created_at = now  # auto_now_add, as a save would set it
    pk = Device._meta.pk
    assert pk is not None
    todo = [(m, list(dict.fromkeys(pk.to_python(i) for i in ids))) for m, ids in plans]
    if len({m.app_id for m, _ids in todo}) != 1:
        raise ValueError("the messages of one write belong to one app")
    if connection.vendor == "postgresql" and not any(m.collapse_key for m, _ in todo):
        found = _write_arrays(todo, None, skip_existing=False, new_messages=True)
    else:
        Message.objects.bulk_create([m for m, _ids in todo])
        found = deliveries_write(todo)
        return found
    for message, _ids in todo:
        message._state.adding = False
        message._state.db = connection.alias
    return found


def _write_arrays(
    plans: list[tuple[Message, list[UUID]]],
    expires_at: datetime | None,
    skip_existing: bool,
    new_messages: bool = False,
) -> dict[UUID, list[Target]]:
    """PostgreSQL: every message of the write in one statement: the seq
    UPDATE feeds the delivery INSERT; with `new_messages` the message rows
    and their counter rows are inserted by the same statement."""
    if len(plans) == 1:
        ctes, params, ids = _one_message(plans[0], expires_at, skip_existing)
    else:
        if skip_existing:
            plans = _without_existing(plans)
        ctes, params, ids = _many_messages(plans, expires_at)
    found: dict[UUID, list[Target]] = {m.pk: [] for m, _ in plans}
    if not ids and not new_messages:
        return found
    if new_messages:
        sql, values = _messages_cte(plans)
        ctes.insert(0, sql)
        params[:0] = values
        sql, values = _counters_cte([m.pk for m, _ids in plans])
        ctes.append(sql)
        params += values
    statement = (
        "WITH " + ", ".join(ctes) + " SELECT i.id, i.message_id, i.device_id, "  # noqa: S608
        "i.seq, b.node FROM ins i JOIN bumped b ON b.id = i.device_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        for row_id, message_id, device_id, seq, node in cursor.fetchall():
            found[message_id].append(Target(device_id, seq, row_id, node=node))
    return found


def _one_message(
    plan: tuple[Message, list[UUID]], expires_at: datetime | None, skip_existing: bool
) -> tuple[list[str], list[Any], list[UUID]]:
    """The seq UPDATE and delivery INSERT of one message (a campaign chunk, a
    push): each device's seq grows by one, and the INSERT reads the UPDATE's
    rows alone. Devices that have the message already are left out by the
    UPDATE (a query of its own, with their ids, was 5% of a campaign)."""
    message, ids = plan
    # Sorted by UUID, compared as integers in C (UUID.__lt__ in Python was a
    # tenth of a 100,000-device campaign). As `= ANY` of the ids PostgreSQL
    # estimates one row per id and finds them through the primary key;
    # joined with the array it hash-joined a sequential scan of every
    # device of the app, a million rows for each chunk (docs/benchmarks.md).
    ordered = sorted(ids, key=_uuid_int)
    params: list[Any] = [pg_array(ordered), message.app_id]
    skip = ""
    if skip_existing:
        # A probe of the (device, message) index per device: OFFSET 0 keeps
        # it a subplan. As an anti-join PostgreSQL hashed all the message's
        # rows, for each chunk (300 ms a chunk at 300,000 rows).
        skip = (
            f"AND NOT EXISTS (SELECT 1 FROM {_table(Delivery)} x "  # noqa: S608
            "WHERE x.device_id = d.id AND x.message_id = %s OFFSET 0) "
        )
        params.append(message.pk)
    # Only quoted table names and placeholders are interpolated. The rows
    # are locked in the scan's order: the ids' order through the primary
    # key, the table's order through a bitmap of many ids (docs/benchmarks.md).
    bumped = (
        f"bumped AS (UPDATE {_table(Device)} d SET last_seq = d.last_seq + 1 "  # noqa: S608
        f"WHERE d.id = ANY(%s::uuid[]) AND d.app_id = %s AND d.is_active {skip}"
        "RETURNING d.id, d.last_seq, d.node)"
    )
    ins = (
        f"ins AS (INSERT INTO {_table(Delivery)} "  # noqa: S608
        "(message_id, device_id, seq, status, created_at, expires_at) "
        "SELECT %s::uuid, b.id, b.last_seq, %s, %s, %s FROM bumped b "
        "RETURNING id, message_id, device_id, seq)"
    )
    params += [
        message.pk,
        DeliveryStatus.PENDING.value,
        timezone.now(),
        expires_at or message.expires_at,
    ]
    return [bumped, ins], params, ordered


def _many_messages(
    plans: list[tuple[Message, list[UUID]]], expires_at: datetime | None
) -> tuple[list[str], list[Any], list[UUID]]:
    """The seq UPDATE and delivery INSERT of several messages: each device's
    seq grows by its count of messages, and each row's seq is its device's
    new last_seq - its count + its rank in plan order."""
    counts: dict[UUID, int] = defaultdict(int)
    # Per row: its plan's place (1-based, into the per-plan arrays: a
    # message id or expiry is sent once, not once per device), its device
    # and its rank among that device's messages.
    places: list[int] = []
    devices: list[UUID] = []
    ranks: list[int] = []
    for place, (_message, ids) in enumerate(plans, start=1):
        for device_id in ids:
            counts[device_id] += 1
            places.append(place)
            devices.append(device_id)
            ranks.append(counts[device_id])
    ordered = sorted(counts, key=_uuid_int)
    # Only quoted table names and placeholders are interpolated.
    bumped = (
        f"bumped AS (UPDATE {_table(Device)} d SET last_seq = d.last_seq + c.n "  # noqa: S608
        "FROM (SELECT unnest(%s::uuid[]) AS id, unnest(%s::int[]) AS n) c "
        "WHERE d.id = c.id AND d.app_id = %s AND d.is_active "
        "RETURNING d.id, d.last_seq, d.node, c.n)"
    )
    ins = (
        f"ins AS (INSERT INTO {_table(Delivery)} "  # noqa: S608
        "(message_id, device_id, seq, status, created_at, expires_at) "
        "SELECT p.m[r.p], r.d, b.last_seq - b.n + r.k, %s, %s, p.e[r.p] FROM "
        "unnest(%s::int[], %s::uuid[], %s::int[]) AS r(p, d, k) "
        "CROSS JOIN (SELECT %s::uuid[] AS m, %s::timestamptz[] AS e) p "
        "JOIN bumped b ON b.id = r.d "
        "RETURNING id, message_id, device_id, seq)"
    )
    params: list[Any] = [
        pg_array(ordered),
        pg_array(counts[i] for i in ordered),
        plans[0][0].app_id,
        DeliveryStatus.PENDING.value,
        timezone.now(),
        pg_array(places),
        pg_array(devices),
        pg_array(ranks),
        pg_array(m.pk for m, _ids in plans),
        pg_array(expires_at or m.expires_at for m, _ids in plans),
    ]
    return [bumped, ins], params, ordered


# The message columns a write of new messages inserts, with their array types.
_MESSAGE_COLUMNS = (
    ("id", "uuid"),
    ("app_id", "bigint"),
    ("title", "text"),
    ("body", "text"),
    ("url", "text"),
    ("image", "text"),
    ("data", "jsonb"),
    ("priority", "text"),
    ("collapse_key", "text"),
    ("encrypted", "jsonb"),
    ("wake_mode", "text"),
    ("created_at", "timestamptz"),
    ("expires_at", "timestamptz"),
)
# Set only on recall and update messages (devices.delivery.recall), which
# are saved on their own: the statement leaves them to their database
# defaults ('' and NULL), a plain message.
CONTROL_COLUMNS = frozenset({"control", "control_of_id"})


def _messages_cte(plans: list[tuple[Message, list[UUID]]]) -> tuple[str, list[Any]]:
    """The INSERT of new messages, one array per column."""
    encoder = Message._meta.get_field("data").encoder
    messages = [message for message, _ids in plans]
    params: list[Any] = []
    for name, sql_type in _MESSAGE_COLUMNS:
        column = [getattr(message, name) for message in messages]
        if sql_type == "jsonb":
            # None stays SQL NULL (a plain push has no `encrypted`).
            params.append(
                [None if v is None else json.dumps(v, cls=encoder) for v in column]
            )
        elif sql_type in ("uuid", "timestamptz", "bigint"):
            params.append(pg_array(column))
        else:
            params.append(column)
    names = ", ".join(name for name, _type in _MESSAGE_COLUMNS)
    # jsonb travels as text, cast per element.
    holes = ", ".join(
        f"%s::{'text' if sql_type == 'jsonb' else sql_type}[]"
        for _name, sql_type in _MESSAGE_COLUMNS
    )
    selects = ", ".join(
        f"{name}::jsonb" if sql_type == "jsonb" else name
        for name, sql_type in _MESSAGE_COLUMNS
    )
    # Only quoted names of ours are interpolated.
    sql = (
        f"msg AS (INSERT INTO {_table(Message)} ({names}) "  # noqa: S608
        f"SELECT {selects} FROM unnest({holes}) AS v({names}))"
    )
    return sql, params


def _counters_cte(message_ids: list[UUID]) -> tuple[str, list[Any]]:
    """New messages' counters: a base row each, and a shard row with the
    count of the rows inserted (devices.delivery.counters)."""
    columns = ", ".join(COLUMNS)
    zeros = ", ".join(["0"] * (len(COLUMNS) - 1))
    # targeted is the first counter column; only our names are interpolated.
    assert COLUMNS[0] == "targeted"
    sql = (
        f"cnt AS (INSERT INTO {_table(MessageCount)} "  # noqa: S608
        f"(message_id, shard, {columns}) "
        f"SELECT m, {BASE_SHARD}, 0, {zeros} FROM unnest(%s::uuid[]) AS m "
        f"UNION ALL SELECT message_id, %s, count(*), {zeros} FROM ins "
        "GROUP BY message_id)"
    )
    shard = random.randrange(COUNT_SHARDS)  # noqa: S311 - spreading, not secrets
    return sql, [pg_array(sorted(message_ids, key=str)), shard]


_uuid_int = operator.attrgetter("int")


def _table(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _without_existing(
    plans: list[tuple[Message, list[UUID]]],
) -> list[tuple[Message, list[UUID]]]:
    """Drop the devices that already have their plan's message."""
    have = set(
        Delivery.objects.filter(
            message_id__in=[m.pk for m, _ids in plans],
            device_id__in=in_values(
                sorted({i for _m, ids in plans for i in ids}, key=_uuid_int), "uuid"
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
