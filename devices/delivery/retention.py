"""Retention: deliveries and messages deleted KPNS_RETENTION_DAYS after
their expiry, a bounded batch at a time (docs/architecture.md, "Counters
and retention").

Run by the scheduler's housekeeping. Messages are walked oldest expiry
first through an index on Message.expires_at; each message's deliveries
whose own expiry is past the cutoff (a campaign slice may expire later than
its message) go in transactions of RETENTION_BATCH rows, locked in id order
first (the one lock order of delivery rows) and skipping any row a receipt
holds. A message goes once it has no deliveries left and nothing else
points at it: a campaign keeps its message, and with it its counters, so
campaign stats outlive the rows. Messages of the API go with their
counters.

Why batched DELETEs and not a table partitioned by time, as the issue
suggested: the (device, message) and (device, seq) unique constraints the
delivery guarantee rests on cannot be enforced across partitions unless the
partition key is in them, and turning the existing table into a
partitioned one rewrites it. The measured cost is in docs/benchmarks.md
("Retention").
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from devices.conf import kpns_setting
from devices.delivery import counters
from devices.delivery.sqlvalues import in_values
from devices.models import Delivery, Message, MessageCount

# Rows one transaction deletes: 5,000 rows took 0.1-0.2 s with their index
# entries on the development machine, short enough to hold their locks.
RETENTION_BATCH = 5_000
# Rows one run deletes at most (one run every HOUSEKEEPING_SECONDS).
RETENTION_LIMIT = 50_000
# Messages one run looks at.
MESSAGES_PER_RUN = 500

# Where the walk stopped: messages that keep rows (a later slice expiry) or
# are kept (a campaign's) are not read again until the walk starts over.
_after: tuple[datetime, Any] | None = None


@dataclass(frozen=True)
class Retained:
    deliveries: int = 0
    messages: int = 0


def retention_run(*, now: datetime, limit: int = RETENTION_LIMIT) -> Retained:
    """Delete up to `limit` deliveries, and the messages left empty, of
    messages that expired more than KPNS_RETENTION_DAYS before `now`."""
    global _after
    days = kpns_setting("RETENTION_DAYS")
    if not days:
        return Retained()
    cutoff = now - timedelta(days=days)
    due = Message.objects.filter(expires_at__lt=cutoff)
    if _after is not None:
        at, pk = _after
        due = due.filter(expires_at__gte=at).exclude(expires_at=at, pk__lte=pk)
    walk = list(
        due.order_by("expires_at", "pk").values_list("expires_at", "pk")[
            :MESSAGES_PER_RUN
        ]
    )
    deleted = 0
    emptied = []
    for expires_at, message_id in walk:
        left = limit - deleted
        if left <= 0:
            break
        # A message from before counters is counted before its rows go.
        counters.counts_ensure(message_id)
        gone, done = _message_rows_delete(message_id, cutoff, left)
        deleted += gone
        if done:
            emptied.append(message_id)
        elif gone >= left:
            break  # stopped by the limit: this message again next run
        _after = (expires_at, message_id)
    else:
        if len(walk) < MESSAGES_PER_RUN:
            _after = None  # walked to the end: start over next run
    return Retained(deliveries=deleted, messages=_messages_delete(emptied))


def reset() -> None:
    """Start the walk from the oldest message again (tests)."""
    global _after
    _after = None


def _message_rows_delete(
    message_id: Any, cutoff: datetime, limit: int
) -> tuple[int, bool]:
    """Delete up to `limit` rows of one message; (deleted, none left)."""
    deleted = 0
    rows = Delivery.objects.filter(message_id=message_id, expires_at__lt=cutoff)
    while deleted < limit:
        batch = min(RETENTION_BATCH, limit - deleted)
        # Any `batch` of its rows, through the (message, status) index: in
        # id order it would sort all of a big campaign's rows every batch.
        found = list(rows.values_list("pk", flat=True)[:batch])
        if found:
            with transaction.atomic():
                # The one lock order: ids ascending; a row a receipt holds
                # waits for the next run.
                ids = list(
                    Delivery.objects.select_for_update(skip_locked=True)
                    .filter(pk__in=in_values(sorted(found), "bigint"))
                    .order_by("pk")
                    .values_list("pk", flat=True)
                )
                deleted += _deliveries_delete(ids) if ids else 0
        if len(found) < batch or not ids:
            break
    return deleted, not Delivery.objects.filter(message_id=message_id).exists()


def _deliveries_delete(ids: list[int]) -> int:
    """DELETE rows by id, and the rows of other tables that point at them
    (what Django's CASCADE would, without loading the deliveries)."""
    for relation in Delivery._meta.related_objects:
        related = relation.related_model._base_manager
        related.filter(**{f"{relation.field.name}__in": ids}).delete()
    table = connection.ops.quote_name(Delivery._meta.db_table)
    where, params = _ids_sql(ids)
    with connection.cursor() as cursor:
        # Only the quoted table name is interpolated.
        cursor.execute(f"DELETE FROM {table} WHERE {where}", params)  # noqa: S608
        return int(cursor.rowcount)


def _messages_delete(message_ids: list[Any]) -> int:
    """Delete the messages nothing points at any more (a campaign keeps its
    message and its counters)."""
    if not message_ids:
        return 0
    kept = Message.objects.filter(pk__in=message_ids)
    for relation in Message._meta.related_objects:
        if relation.related_model in (Delivery, MessageCount):
            continue
        pointing = relation.related_model._base_manager.filter(
            **{f"{relation.field.name}__in": message_ids}
        ).values(relation.field.attname)
        kept = kept.exclude(pk__in=pointing)
    with transaction.atomic():
        _total, per_model = kept.delete()
    return per_model.get(Message._meta.label, 0)


def _ids_sql(ids: list[int]) -> tuple[str, list[Any]]:
    if connection.vendor == "postgresql":
        return "id = ANY(%s::bigint[])", ["{" + ",".join(map(str, ids)) + "}"]
    return f"id IN ({','.join(['%s'] * len(ids))})", list(ids)
