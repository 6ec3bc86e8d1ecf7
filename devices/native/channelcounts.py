"""Exact native receipts per message and channel, kept as counters.

The channel split of the stats (campaign page, its JSON, the API's message
and campaign stats) reads these rows, never the attempt or delivery rows:
a COUNT over a million-device campaign's rows on every page load is what
devices.delivery.counters exists to avoid, and the same design holds here.
Every transaction that inserts a NativeAttempt, moves its status or marks
it seen by the device keeps a ``ChannelTally`` and applies it last: one
upsert onto one of COUNT_SHARDS rows per (message, channel), drawn per
transaction, so the counters move in the same commit as the rows. A read
sums at most COUNT_SHARDS + 1 rows per channel (shard -1: attempts made
before the counters, counted once by migration native 0004).
"""

import random
from collections import defaultdict
from typing import Any

from django.db import connection
from django.db.models import Sum

from devices.delivery.counters import COUNT_SHARDS
from devices.models import Message
from devices.native.models import AttemptStatus, ChannelCount

COLUMNS = ("accepted", "failed", "retrying", "delivered")
STATUS_COLUMN = {
    AttemptStatus.ACCEPTED: "accepted",
    AttemptStatus.FAILED: "failed",
    AttemptStatus.RETRY: "retrying",
}


class ChannelTally:
    """The channel count differences of one transaction."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, str], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(COLUMNS, 0)
        )

    def moved(
        self, message_id: Any, channel: str, old: str | None, new: str, n: int = 1
    ) -> None:
        """An attempt went from status `old` (None: inserted) to `new`."""
        if old == new:
            return
        counts = self.counts[(_key(message_id), channel)]
        if old is not None:
            counts[STATUS_COLUMN[AttemptStatus(old)]] -= n
        counts[STATUS_COLUMN[AttemptStatus(new)]] += n

    def seen(self, message_id: Any, channel: str, n: int = 1) -> None:
        """The device confirmed `n` deliveries through this channel."""
        self.counts[(_key(message_id), channel)]["delivered"] += n

    def apply(self) -> None:
        """One upsert, (message, channel) in order; call last in the
        transaction that changed the rows."""
        shard = random.randrange(COUNT_SHARDS)  # noqa: S311 - spreading, not secrets
        rows = [
            (key, counts)
            for key, counts in sorted(self.counts.items(), key=_by_key)
            if any(counts.values())
        ]
        self.counts.clear()
        if not rows:
            return
        table = connection.ops.quote_name(ChannelCount._meta.db_table)
        columns = ", ".join(COLUMNS)
        holes = ", ".join(["%s"] * (3 + len(COLUMNS)))
        params: list[Any] = []
        for (message_id, channel), counts in rows:
            params += [_message_pk(message_id), shard, channel]
            params += [counts[c] for c in COLUMNS]
        # Only our quoted table and column names are interpolated.
        sql = (
            f"INSERT INTO {table} (message_id, shard, channel, {columns}) "  # noqa: S608
            f"VALUES {', '.join([f'({holes})'] * len(rows))} "
            "ON CONFLICT (message_id, channel, shard) DO UPDATE SET "
            + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COLUMNS)
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def channel_counts(message_ids: list[Any]) -> dict[str, dict[str, int]]:
    """The messages' counts per native channel that has any, summed."""
    rows = (
        ChannelCount.objects.filter(message_id__in=message_ids)
        .values("channel")
        .annotate(**{column: Sum(column) for column in COLUMNS})
    )
    return {
        row["channel"]: {column: int(row[column] or 0) for column in COLUMNS}
        for row in rows
    }


def _by_key(item: tuple[tuple[Any, str], Any]) -> tuple[str, str]:
    # A uuid's text sorts as its bytes do: PostgreSQL's order of the keys.
    return str(item[0][0]), item[0][1]


def _key(message_id: Any) -> Any:
    pk = Message._meta.pk
    assert pk is not None
    return pk.to_python(message_id)


def _message_pk(message_id: Any) -> Any:
    pk = Message._meta.pk
    assert pk is not None
    return pk.get_db_prep_value(_key(message_id), connection)
