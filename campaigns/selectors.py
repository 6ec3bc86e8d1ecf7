"""Read-side queries for campaigns: stats, timeline, per-device results.

Stats and the dashboard read counters that move in the same transaction
as the delivery rows (devices.delivery.counters): exact under any
concurrency, kept after retention deletes the rows, and one small read
instead of a COUNT over a campaign's rows on every page load.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import TruncMinute, TruncSecond
from django.utils import timezone

from campaigns.models import Campaign, CampaignMessage
from devices.delivery import counters
from devices.delivery.counters import BASE_SHARD
from devices.delivery.counters import COLUMNS as COUNT_COLUMNS
from devices.delivery.stats import STAT_NAMES, message_stats  # noqa: F401 - re-exported
from devices.models import Control, Delivery, Device, MessageCount
from devices.native import selectors as native_selectors

BREAKDOWN_COLUMNS = ("targeted", "sent", "delivered", "opened")


def campaign_message_ids(campaign: Campaign) -> list[Any]:
    """Every message the campaign sent (one per canary wave, variant,
    language and distinct content: campaigns.content)."""
    return list(
        CampaignMessage.objects.filter(campaign_id=campaign.pk).values_list(
            "message_id", flat=True
        )
    )


def campaign_delivery_stats(campaign: Campaign) -> dict[str, int]:
    """Deliveries by state (devices.delivery.stats), summed over its
    messages in one read of their counters: a personalised campaign may
    have a message per device. A message without counter rows yet (the base
    message nobody got, or one sent before counters) is read on its own,
    which backfills it once."""
    ids = campaign_message_ids(campaign)
    counted = set(
        MessageCount.objects.filter(message_id__in=ids, shard=BASE_SHARD)
        .values_list("message_id", flat=True)
        .distinct()
    )
    total = message_stats(None)
    for message_id in set(ids) - counted:
        for name, value in message_stats(message_id).items():
            total[name] += value
    if counted:
        sums = MessageCount.objects.filter(message_id__in=counted).aggregate(
            **{name: Sum(name) for name in COUNT_COLUMNS}
        )
        counts = {name: int(sums[name] or 0) for name in COUNT_COLUMNS}
        # As devices.delivery.stats.message_stats: open = targeted - closed.
        closed = ("delivered", "expired", "collapsed", "cancelled", "dropped")
        counts["pending"] = counts["targeted"] - sum(counts[n] for n in closed)
        for name in total:
            total[name] += counts[name]
    return total


def campaign_stats(campaign: Campaign) -> dict[str, int]:
    """Deliveries by state, then by the channel that carried them
    (devices.native.selectors.channel_stats), over all its messages."""
    ids = campaign_message_ids(campaign)
    stats = campaign_delivery_stats(campaign)
    return {
        **stats,
        **native_selectors.channel_stats(ids, delivered=stats["delivered"]),
    }


def campaign_counts_by(
    campaign: Campaign, key: str, columns: tuple[str, ...] = BREAKDOWN_COLUMNS
) -> dict[Any, dict[str, int]]:
    """Counter totals per variant, language ("locale") or canary wave, one
    grouped read of the messages' counters (exact: the sender's messages
    start at zero, devices.delivery.counters)."""
    link = f"message__campaign_link__{key}"
    rows = (
        MessageCount.objects.filter(message__campaign_link__campaign_id=campaign.pk)
        .values(link)
        .annotate(**{name: Sum(name) for name in {"targeted", *columns}})
        .order_by(link)
    )
    # Variant A's base message (Campaign.message) may have reached nobody:
    # personalised or translated content went in other messages.
    return {
        row[link]: {name: int(row[name] or 0) for name in columns}
        for row in rows
        if row["targeted"]
    }


def campaign_platforms(campaign: Campaign) -> dict[str, dict[str, int]]:
    """Targeted, delivered and opened per platform: a COUNT over the
    campaign's delivery rows, so on demand (the campaign page), never in
    the campaign list."""
    rows = (
        Delivery.objects.filter(message_id__in=campaign_message_ids(campaign))
        .values("device__platform")
        .annotate(
            targeted=Count("pk"),
            delivered=Count("delivered_at"),
            opened=Count("opened_at"),
        )
        .order_by("device__platform")
    )
    return {
        row["device__platform"]: {
            "targeted": row["targeted"],
            "delivered": row["delivered"],
            "opened": row["opened"],
        }
        for row in rows
    }


def campaign_channels(campaign: Campaign) -> dict[str, dict[str, int]]:
    """The split by channel (devices.native.selectors.channel_split),
    summed over the campaign's messages."""
    delivered = campaign_delivery_stats(campaign)["delivered"]
    return native_selectors.channel_split(
        campaign_message_ids(campaign), delivered=delivered
    )


def campaign_timeline(campaign: Campaign) -> list[dict[str, Any]]:
    """Sent, delivered and opened per second (per minute past 10 minutes)."""
    ids = campaign_message_ids(campaign)
    if not ids or campaign.started_at is None:
        return []
    end = campaign.finished_at or timezone.now()
    trunc = (
        TruncSecond
        if end - campaign.started_at < timedelta(minutes=10)
        else TruncMinute
    )
    rows = Delivery.objects.filter(message_id__in=ids)
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
    # A to E, and the language version sent ("" for the variant's own).
    "variant",
    "language",
    # socket, webpush, fcm, apns, or empty (native_selectors.delivery_channel).
    "channel",
)
# The admin's CSV adds when the device acknowledged a recall of what it was
# sent, and the last update of it (empty: none, or not acknowledged).
CSV_COLUMNS = (*RESULT_COLUMNS, "recalled_at", "updated_at")


# The send time of a device's row is when the campaign's chunk enqueued it
# (the row's creation), online or not. The row's own sent_at is when a
# socket wrote it; receipts record it with the ack when both arrive in one
# flush (devices/delivery/receiptwriter.py), so it equalled delivered_at.
SEND_TIME = F("created_at")


def campaign_results(campaign: Campaign) -> Iterator[tuple[Any, ...]]:
    """One row per targeted device, streamed from the database."""
    ids = campaign_message_ids(campaign)
    if not ids:
        return iter(())
    return (
        Delivery.objects.filter(message_id__in=ids)
        .annotate(
            channel=native_selectors.delivery_channel(),
            send_time=SEND_TIME,
            variant=F("message__campaign_link__variant"),
            language=F("message__campaign_link__locale"),
            recalled_at=_control_acked_at(Control.RECALL),
            updated_at=_control_acked_at(Control.UPDATE),
        )
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
            "variant",
            "language",
            "channel",
            "recalled_at",
            "updated_at",
        )
        .iterator(chunk_size=2000)
    )


def _control_acked_at(kind: str) -> Subquery:
    """When the row's device last acknowledged a recall or an update of
    the row's message (devices.delivery.recall: control deliveries)."""
    return Subquery(
        Delivery.objects.filter(
            device_id=OuterRef("device_id"),
            message__control_of_id=OuterRef("message_id"),
            message__control=kind,
            delivered_at__isnull=False,
        )
        .order_by("-delivered_at")
        .values("delivered_at")[:1]
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
    rows = Delivery.objects.filter(message_id__in=campaign_message_ids(campaign))
    if device_id is not None:
        rows = rows.filter(device_id=device_id)
    return rows.annotate(
        alias=F("device__alias"),
        platform=F("device__platform"),
        channel=native_selectors.delivery_channel(),
        send_time=SEND_TIME,
        variant=F("message__campaign_link__variant"),
        language=F("message__campaign_link__locale"),
    ).values(*[name for name in RESULT_COLUMNS if name != "sent_at"], "send_time")
