"""Exact delivery counts kept as counters, moved with the rows they count.

Stats pages, the API's message and campaign stats and the admin's dashboard
read these instead of counting delivery rows: a COUNT over a million-device
campaign's rows (or over the whole table, for "delivered in the last hour")
on every page load read the hottest table, and retention deletes the rows
while the stats must stay (docs/architecture.md, "Counters and retention").

Every transaction that inserts deliveries or moves their status keeps a
``Tally``: before each UPDATE it reads how many of the rows it is about to
change are in which state (one grouped query over rows it has already
locked), and at its end it adds the differences with one upsert per table,
messages in id order. So a counter changes only when its rows do, in the
same commit. The upsert adds to one of COUNT_SHARDS rows per message, drawn
per transaction: the receipt writers of several nodes and the scheduler's
chunks of a million-device campaign would otherwise all queue on one row
for the rest of each other's transaction. A read sums at most
COUNT_SHARDS + 1 rows.

Messages sent before counters existed are counted once, on first read
(``message_counts``) or by ``manage.py kpns_counts_backfill``: one
statement writes the base row (shard -1) as COUNT(rows) - SUM(shards) from
a single snapshot, so deltas committed meanwhile are neither lost nor
counted twice.
"""

import random
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from devices.models import (
    DeliveredMinute,
    Delivery,
    DeliveryStatus,
    Message,
    MessageCount,
)

# 8 rows per message: two server processes' receipt writers and a scheduler
# (the production shape of one machine) rarely draw the same one, and a
# read stays one index range of at most 9 rows.
COUNT_SHARDS = 8
BASE_SHARD = -1

COLUMNS = (
    "targeted",
    "sent",
    "delivered",
    "opened",
    "expired",
    "collapsed",
    "cancelled",
    "dropped",
)
# Closed states with a column of their own (delivered and opened have theirs).
_CLOSED = {
    DeliveryStatus.EXPIRED: "expired",
    DeliveryStatus.COLLAPSED: "collapsed",
    DeliveryStatus.CANCELLED: "cancelled",
    DeliveryStatus.DROPPED: "dropped",
}
_REACHED = (DeliveryStatus.DELIVERED, DeliveryStatus.OPENED)


class Tally:
    """The count differences of one transaction, written by ``apply``."""

    def __init__(self) -> None:
        self.counts: dict[Any, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(COLUMNS, 0)
        )
        self.minutes: dict[datetime, int] = defaultdict(int)
        self.fresh: set[Any] = set()

    def inserted(self, message_id: Any, rows: int, *, fresh: bool = False) -> None:
        """`rows` pending deliveries inserted; `fresh`: the message had none
        before (its counters start at zero, no backfill needed)."""
        self.counts[_key(message_id)]["targeted"] += rows
        if fresh:
            self.fresh.add(_key(message_id))

    def moving(
        self,
        rows: QuerySet[Delivery],
        to: str,
        *,
        stamps_sent: bool = False,
        now: datetime | None = None,
    ) -> None:
        """Count `rows` (locked by the caller) before they are UPDATEd to
        status `to`; `stamps_sent`: the UPDATE sets sent_at where it is NULL."""
        grouped = rows.values("message_id", "status").annotate(
            n=Count("pk"), unsent=Count("pk", filter=Q(sent_at__isnull=True))
        )
        for row in grouped:
            message_id = _key(row["message_id"])
            self._move(message_id, row["status"], to, row["n"])
            if to == DeliveryStatus.DELIVERED and row["status"] not in _REACHED:
                self.minutes[_minute(now or timezone.now())] += row["n"]
            if stamps_sent or to == DeliveryStatus.SENT:
                self.counts[message_id]["sent"] += row["unsent"]

    def _move(self, message_id: Any, old: str, new: str, n: int) -> None:
        if old == new:
            return
        counts = self.counts[message_id]
        if old in _CLOSED:
            counts[_CLOSED[old]] -= n  # type: ignore[index]
        if new in _CLOSED:
            counts[_CLOSED[new]] += n  # type: ignore[index]
        if new in _REACHED and old not in _REACHED:
            counts["delivered"] += n
        if new == DeliveryStatus.OPENED:
            counts["opened"] += n

    def apply(self) -> None:
        """Add the differences: one upsert per table, in message id order,
        on this transaction's shard. Call last in the transaction."""
        shard = random.randrange(COUNT_SHARDS)  # noqa: S311 - spreading, not secrets
        rows = [
            (message_id, shard, counts)
            for message_id, counts in sorted(self.counts.items(), key=_by_id)
            if any(counts.values())
        ]
        rows += [
            (message_id, BASE_SHARD, dict.fromkeys(COLUMNS, 0))
            for message_id in sorted(self.fresh, key=str)
        ]
        if rows:
            _upsert_counts(rows)
        minutes = [(m, shard, n) for m, n in sorted(self.minutes.items()) if n]
        if minutes:
            _upsert_minutes(minutes)
        self.counts.clear()
        self.minutes.clear()
        self.fresh.clear()


def message_counts(message_id: Any) -> dict[str, int]:
    """A message's counts: the sum of its rows (backfilled on first read)."""
    summed = _summed(message_id)
    if summed is None:
        counts_backfill(message_id)
        summed = _summed(message_id) or dict.fromkeys(COLUMNS, 0)
    return summed


def delivered_since(moment: datetime) -> int:
    """Deliveries acked from `moment` on (at minute granularity)."""
    total = DeliveredMinute.objects.filter(minute__gte=_minute(moment)).aggregate(
        n=Sum("delivered")
    )["n"]
    return int(total or 0)


def minutes_prune(*, before: datetime) -> int:
    """Forget per-minute tallies older than `before`."""
    deleted, _ = DeliveredMinute.objects.filter(minute__lt=before).delete()
    return deleted


def counts_backfill(message_id: Any) -> bool:
    """Write the base row of a message counted before counters existed.

    One statement, so COUNT(rows) and SUM(shards) come from one snapshot:
    base + shards = rows, whatever commits meanwhile. False when it had one.
    """
    counts = f"{_quoted(MessageCount)}"
    deliveries = f"{_quoted(Delivery)}"
    selects = {
        "targeted": "count(*)",
        "sent": "count(sent_at)",
        "delivered": "count(delivered_at)",
        "opened": "count(opened_at)",
        **{
            column: f"count(*) FILTER (WHERE status = '{status.value}')"
            if connection.vendor == "postgresql"
            else f"sum(CASE WHEN status = '{status.value}' THEN 1 ELSE 0 END)"
            for status, column in _CLOSED.items()
        },
    }
    columns = ", ".join(COLUMNS)
    # Only our quoted table names, column names and status literals are
    # interpolated; the message id travels as a parameter.
    sql = (
        f"INSERT INTO {counts} (message_id, shard, {columns}) "  # noqa: S608
        f"SELECT %s, {BASE_SHARD}, "
        + ", ".join(f"coalesce(r.{c}, 0) - coalesce(s.{c}, 0)" for c in COLUMNS)
        + " FROM (SELECT "
        + ", ".join(f"{expr} AS {c}" for c, expr in selects.items())
        + f" FROM {deliveries} WHERE message_id = %s) r, (SELECT "
        + ", ".join(f"sum({c}) AS {c}" for c in COLUMNS)
        + f" FROM {counts} WHERE message_id = %s AND shard >= 0) s "
        + "WHERE true ON CONFLICT (message_id, shard) DO NOTHING"
    )
    pk = _message_pk(message_id)
    if not Message.objects.filter(pk=message_id).exists():
        return False
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk, pk, pk])
        return bool(cursor.rowcount > 0)


def counts_ensure(message_id: Any) -> None:
    """Backfill a message unless it has its base row (before its rows go)."""
    if not MessageCount.objects.filter(
        message_id=message_id, shard=BASE_SHARD
    ).exists():
        counts_backfill(message_id)


def counts_backfill_all(*, limit: int = 1000) -> int:
    """Backfill up to `limit` messages that have no base row; how many."""
    missing = (
        Message.objects.exclude(
            pk__in=MessageCount.objects.filter(shard=BASE_SHARD).values("message_id")
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(counts_backfill(message_id) for message_id in list(missing))


def _summed(message_id: Any) -> dict[str, int] | None:
    rows = MessageCount.objects.filter(message_id=message_id)
    totals = rows.aggregate(
        base=Count("pk", filter=Q(shard=BASE_SHARD)),
        **{column: Sum(column) for column in COLUMNS},
    )
    if not totals.pop("base"):
        return None
    return {column: int(totals[column] or 0) for column in COLUMNS}


def _upsert_counts(rows: list[tuple[Any, int, dict[str, int]]]) -> None:
    table = _quoted(MessageCount)
    columns = ", ".join(COLUMNS)
    holes = ", ".join(["%s"] * (2 + len(COLUMNS)))
    values = ", ".join([f"({holes})"] * len(rows))
    params: list[Any] = []
    for message_id, shard, counts in rows:
        params += [_message_pk(message_id), shard, *(counts[c] for c in COLUMNS)]
    # Only our quoted table and column names are interpolated.
    sql = (
        f"INSERT INTO {table} (message_id, shard, {columns}) "  # noqa: S608
        f"VALUES {values} ON CONFLICT (message_id, shard) DO UPDATE SET "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COLUMNS)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _upsert_minutes(rows: list[tuple[datetime, int, int]]) -> None:
    table = _quoted(DeliveredMinute)
    stamp = DeliveredMinute._meta.get_field("minute")
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for minute, shard, n in rows:
        params += [stamp.get_db_prep_value(minute, connection), shard, n]
    # Only our quoted table name is interpolated.
    sql = (
        f"INSERT INTO {table} (minute, shard, delivered) "  # noqa: S608
        f"VALUES {values} ON CONFLICT (minute, shard) DO UPDATE SET "
        f"delivered = {table}.delivered + excluded.delivered"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _by_id(item: tuple[Any, Any]) -> str:
    # A uuid's text sorts as its bytes do: PostgreSQL's order of the keys.
    return str(item[0])


def _key(message_id: Any) -> Any:
    """One form of a message id (UUID), whatever the caller held."""
    pk = Message._meta.pk
    assert pk is not None
    return pk.to_python(message_id)


def _message_pk(message_id: Any) -> Any:
    pk = Message._meta.pk
    assert pk is not None
    return pk.get_db_prep_value(_key(message_id), connection)


def _quoted(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)
