"""Read-side queries for campaigns: stats, timeline, per-device results.

Stats and the dashboard read counters that move in the same transaction
as the delivery rows (devices.delivery.counters): exact under any
concurrency, kept after retention deletes the rows, and one small read
instead of a COUNT over a campaign's rows on every page load.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, F, QuerySet
from django.db.models.functions import TruncMinute, TruncSecond
from django.utils import timezone

from campaigns.models import Campaign
from devices.delivery import counters
from devices.delivery.stats import STAT_NAMES, message_stats  # noqa: F401 - re-exported
from devices.models import Delivery, Device
from devices.native import selectors as native_selectors


def campaign_stats(campaign: Campaign) -> dict[str, int]:
    """Deliveries by state, then by the channel that carried them
    (devices.native.selectors.channel_stats)."""
    return {
        **message_stats(campaign.message_id),
        **native_selectors.channel_stats(campaign.message_id),
    }


def campaign_timeline(campaign: Campaign) -> list[dict[str, Any]]:
    """Sent, delivered and opened per second (per minute past 10 minutes)."""
    if campaign.message_id is None or campaign.started_at is None:
        return []
    end = campaign.finished_at or timezone.now()
    trunc = (
        TruncSecond
        if end - campaign.started_at < timedelta(minutes=10)
        else TruncMinute
    )
    rows = Delivery.objects.filter(message_id=campaign.message_id)
    buckets: dict[Any, dict[str, int]] = {}
    for name in ("sent", "delivered", "opened"):
        field = f"{name}_at"
        counted = (
            rows.filter(**{f"{field}__isnull": False})
            .annotate(bucket=trunc(field))
            .values("bucket")
            .annotate(n=Count("pk"))
        )
        for row in counted:
            entry = buckets.setdefault(
                row["bucket"], {"sent": 0, "delivered": 0, "opened": 0}
            )
            entry[name] = row["n"]
    return [{"t": bucket.isoformat(), **buckets[bucket]} for bucket in sorted(buckets)]


RESULT_COLUMNS = (
    "device_id",
    "alias",
    "platform",
    "seq",
    "status",
    "sent_at",
    "delivered_at",
    "opened_at",
    # socket, webpush, fcm, apns, or empty (native_selectors.delivery_channel).
    "channel",
)


# The send time of a device's row is when the campaign's chunk enqueued it
# (the row's creation), online or not. The row's own sent_at is when a
# socket wrote it; receipts record it with the ack when both arrive in one
# flush (devices/delivery/receiptwriter.py), so it equalled delivered_at.
SEND_TIME = F("created_at")


def campaign_results(campaign: Campaign) -> Iterator[tuple[Any, ...]]:
    """One row per targeted device, streamed from the database."""
    if campaign.message_id is None:
        return iter(())
    return (
        Delivery.objects.filter(message_id=campaign.message_id)
        .annotate(channel=native_selectors.delivery_channel(), send_time=SEND_TIME)
        .order_by("device_id")
        .values_list(
            "device_id",
            "device__alias",
            "device__platform",
            "seq",
            "status",
            "send_time",
            "delivered_at",
            "opened_at",
            "channel",
        )
        .iterator(chunk_size=2000)
    )


def dashboard_stats() -> dict[str, int]:
    hour_ago = timezone.now() - timedelta(hours=1)
    return {
        "devices": Device.objects.filter(is_active=True).count(),
        "online": Device.objects.filter(node__isnull=False).count(),
        # Per-minute tallies, not a scan of delivered_at (unindexed).
        "delivered_last_hour": counters.delivered_since(hour_ago),
    }


def campaign_of_app(app: Any, campaign_id: int) -> Campaign | None:
    """The app's campaign with this id; None for another app's (tenancy)."""
    return Campaign.objects.filter(app=app, pk=campaign_id).first()


def campaign_deliveries(campaign: Campaign, *, device_id: Any = None) -> QuerySet:
    """The per-device results as rows (dicts), for paging by device id."""
    rows = Delivery.objects.filter(message_id=campaign.message_id)
    if campaign.message_id is None:
        rows = rows.none()
    if device_id is not None:
        rows = rows.filter(device_id=device_id)
    return rows.annotate(
        alias=F("device__alias"),
        platform=F("device__platform"),
        channel=native_selectors.delivery_channel(),
        send_time=SEND_TIME,
    ).values(*[name for name in RESULT_COLUMNS if name != "sent_at"], "send_time")
