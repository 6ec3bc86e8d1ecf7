"""Frequency caps: at most N capped pushes per device in a rolling window.

A push counts toward the cap exactly when it is subject to one: a campaign
under the app's cap or its own, or an API push sent with
``respect_frequency_cap``. Exempt campaigns and ordinary API pushes are
neither capped nor counted. Each counted push leaves a CappedPush row per
device it was written for, in the same transaction as its deliveries.

The check is one query per chunk: for each device, the ledger rows in the
window, counted through the (device, sent_at) index as an index-only range
scan (a few rows per device), never a scan of the delivery table. The
writers lock the devices' rows first (``devices_lock``), in the one lock
order of device rows (by id), so two capped sends to one device serialize
and the second sees the first's row: the cap holds under concurrency.
Measured on 1M ledger rows: docs/benchmarks.md ("Frequency caps").
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connection
from django.db.models import Count, QuerySet

from devices.delivery.sqlvalues import id_list_sql, in_values, pg_array
from devices.models import App, CappedPush, Delivery, Device

# The longest window a cap may have: the ledger keeps this much history.
MAX_WINDOW = timedelta(days=30)
MIN_WINDOW = timedelta(minutes=1)
MAX_COUNT = 1000
# The windows offered in the admin (the API takes any number of seconds
# between MIN_WINDOW and MAX_WINDOW).
WINDOW_CHOICES = [
    (3600, "1 hour"),
    (6 * 3600, "6 hours"),
    (12 * 3600, "12 hours"),
    (86400, "1 day (24 hours)"),
    (2 * 86400, "2 days"),
    (3 * 86400, "3 days"),
    (7 * 86400, "7 days"),
    (14 * 86400, "14 days"),
    (30 * 86400, "30 days"),
]


@dataclass(frozen=True)
class FrequencyCap:
    limit: int
    window: timedelta


def window_words(window: timedelta) -> str:
    """3600 -> "1 hour": the admin's words for a window."""
    seconds = int(window.total_seconds())
    for value, label in WINDOW_CHOICES:
        if value == seconds:
            return label.split(" (")[0]
    hours, rest = divmod(seconds, 3600)
    return f"{hours} hours" if not rest else f"{seconds} seconds"


def app_cap(app: App) -> FrequencyCap | None:
    """The app's own cap, or None when it has none (the default)."""
    if not app.frequency_cap_count:
        return None
    return FrequencyCap(
        app.frequency_cap_count, timedelta(seconds=app.frequency_cap_window_seconds)
    )


def cap_errors(count: int | None, window_seconds: int | None) -> dict[str, str]:
    """What is wrong with a cap's two numbers: "count", "window_seconds"."""
    errors = {}
    if count is not None and not 1 <= count <= MAX_COUNT:
        errors["count"] = f"Between 1 and {MAX_COUNT} pushes."
    low, high = int(MIN_WINDOW.total_seconds()), int(MAX_WINDOW.total_seconds())
    if window_seconds is not None and not low <= window_seconds <= high:
        errors["window_seconds"] = "Between 1 minute and 30 days."
    return errors


def devices_lock(device_ids: Sequence[UUID]) -> None:
    """Lock the devices' rows in id order (the writers' one lock order)."""
    if not device_ids or connection.vendor != "postgresql":
        return  # SQLite serializes writers itself
    table = connection.ops.quote_name(Device._meta.db_table)
    id_sql, params = id_list_sql(sorted(device_ids))
    with connection.cursor() as cursor:
        # Only a quoted table name and placeholders are interpolated.
        cursor.execute(
            f"SELECT id FROM {table} WHERE {id_sql} ORDER BY id FOR UPDATE",  # noqa: S608
            params,
        )


def capped_devices(
    device_ids: Sequence[UUID],
    *,
    cap: FrequencyCap,
    now: datetime,
    message_ids: Iterable[UUID] | QuerySet = (),
) -> set[UUID]:
    """The devices that already had `cap.limit` counted pushes in the window
    ending at `now`; one query. Devices that already have one of
    `message_ids` (ids, or a subquery of them) are left out: they were
    sent it, not capped."""
    if not device_ids:
        return set()
    return set(capped_query(device_ids, cap=cap, now=now, message_ids=message_ids))


def capped_query(
    device_ids: Sequence[UUID],
    *,
    cap: FrequencyCap,
    now: datetime,
    message_ids: Iterable[UUID] | QuerySet = (),
) -> QuerySet:
    """capped_devices' query: per device, an index-only range scan of
    (device_id, sent_at) for the window, grouped and counted."""
    ids = in_values(list(device_ids), "uuid")
    rows = CappedPush.objects.filter(
        device_id__in=ids, sent_at__gt=now - cap.window, sent_at__lte=now
    )
    if not isinstance(message_ids, QuerySet):
        message_ids = list(message_ids)
    if isinstance(message_ids, QuerySet) or message_ids:
        # Through the unique (device, message) index of deliveries.
        rows = rows.exclude(
            device_id__in=Delivery.objects.filter(
                message_id__in=message_ids, device_id__in=ids
            ).values("device_id")
        )
    return (
        rows.order_by()
        .values("device_id")
        .annotate(n=Count("*"))
        .filter(n__gte=cap.limit)
        .values_list("device_id", flat=True)
    )


def pushes_record(device_ids: Sequence[UUID], *, now: datetime) -> None:
    """Count one push for each device (in the caller's transaction)."""
    if not device_ids:
        return
    if connection.vendor != "postgresql":
        CappedPush.objects.bulk_create(
            CappedPush(device_id=i, sent_at=now) for i in device_ids
        )
        return
    table = connection.ops.quote_name(CappedPush._meta.db_table)
    with connection.cursor() as cursor:
        # Only a quoted table name and placeholders are interpolated.
        cursor.execute(
            f"INSERT INTO {table} (device_id, sent_at) "  # noqa: S608
            "SELECT unnest(%s::uuid[]), %s",
            [pg_array(device_ids), now],
        )


def ledger_prune(*, now: datetime, limit: int = 50_000) -> int:
    """Forget counted pushes older than any window (bounded per run)."""
    old = CappedPush.objects.filter(sent_at__lt=now - MAX_WINDOW).order_by("sent_at")
    ids = list(old.values_list("pk", flat=True)[:limit])
    if not ids:
        return 0
    deleted, _ = CappedPush.objects.filter(pk__in=in_values(ids, "bigint")).delete()
    return deleted
