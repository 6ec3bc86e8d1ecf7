"""Data lifecycle scenarios: retention on a seeded table, and the stats
pages over a big delivery table.

* retention (`--retention-rows`, in bench-quick): seeds messages and
  their deliveries with one INSERT ... SELECT each (no counters, as rows of
  a release before counters), half of them expired 40 days ago, one of
  those a campaign's; reads the stats, runs retention until it has nothing
  left, and checks what went (every old delivery, the old messages but the
  campaign's) and what stayed (every recent delivery; the campaign's stats,
  equal to before). Reports rows deleted per second.
* pages (`--rows`, default 10 million): seeds that many delivery rows,
  one campaign of a million devices among them, then times the admin
  index, the campaign page, its stats JSON and the API's campaign stats
  (median and max of 5), beside the COUNT queries they ran before
  counters. Seeding is bounded by PAGES_SEED_SECONDS: the size reached is
  reported. One delivery in NATIVE_EVERY of the campaign has a Web Push
  attempt, so the channel split has rows to count; it is timed against the
  COUNTs the page ran before the channel counters.

Seeded rows have negative seqs (never a device's next seq) and closed
states (never replayed), on device ids of no registered device.
"""

import argparse
import statistics
import time
from datetime import timedelta
from typing import Any

from bench.platform import Platform

ROWS_PER_STATEMENT = 1_000_000
PAGES_SEED_SECONDS = 1200.0
CAMPAIGN_DEVICES = 1_000_000
PAGE_REPEATS = 5
# One delivery in this many of the seeded campaign also went through Web Push.
NATIVE_EVERY = 10


def scenario_retention(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection, transaction
    from django.utils import timezone

    from devices.delivery import retention
    from devices.delivery.stats import message_stats
    from devices.models import Delivery, Message

    now = timezone.now()
    devices = min(args.devices, 2000)
    per_side = max(1, args.retention_rows // devices // 2)
    old = _messages(platform.app, per_side, now - timedelta(days=40))
    recent = _messages(platform.app, per_side, now + timedelta(days=1))
    campaign_message = old[0]
    _campaign_of(platform.app, campaign_message)
    seed_started = time.monotonic()
    # Seeded and counted in one transaction: the scheduler's own retention
    # run cannot delete a row before the first read counted it.
    with transaction.atomic():
        for index, message in enumerate(old + recent):
            _seed_rows(message, devices, seq=-(index + 1), device_offset=0)
        before = message_stats(campaign_message.pk)  # counted on first read
    seed_s = time.monotonic() - seed_started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE devices_delivery")
    recent_before = Delivery.objects.filter(message__in=recent).count()
    retention.reset()
    started = time.monotonic()
    deleted = runs = 0
    while runs < 1000:
        runs += 1
        result = retention.retention_run(now=timezone.now())
        deleted += result.deliveries
        if not result.deliveries and not result.messages:
            break
    seconds = time.monotonic() - started
    old_left = Delivery.objects.filter(message_id__in=[m.pk for m in old]).count()
    messages_left = Message.objects.filter(pk__in=[m.pk for m in old])
    after = message_stats(campaign_message.pk)
    recent_after = Delivery.objects.filter(message__in=recent).count()
    seeded = devices * per_side * 2
    # Leave nothing for the next scenarios.
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM devices_delivery WHERE message_id = ANY(%s)",
            [[m.pk for m in recent]],
        )
    return {
        "rows_seeded": seeded,
        "seed_s": round(seed_s, 2),
        "retention_runs": runs,
        "rows_deleted": deleted,
        "retention_s": round(seconds, 2),
        "rows_deleted_per_s": round(deleted / seconds, 1) if seconds else None,
        "checks": {
            "every delivery past retention deleted": old_left == 0,
            "every recent delivery kept": recent_after
            == recent_before
            == devices * per_side,
            "old messages deleted, the campaign's kept": list(
                messages_left.values_list("pk", flat=True)
            )
            == [campaign_message.pk],
            "campaign stats intact": after == before and before["targeted"] == devices,
        },
    }


def scenario_pages(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from devices.models import Delivery

    now = timezone.now()
    later = now + timedelta(days=1)
    messages = _messages(platform.app, 1, later)
    campaign = _campaign_of(platform.app, messages[0])
    seeded = 0
    started = time.monotonic()
    # The campaign's million rows first, then other messages of a million
    # devices each, until the size asked (or the time bound).
    while seeded < args.rows and time.monotonic() - started < PAGES_SEED_SECONDS:
        number, offset = divmod(seeded, CAMPAIGN_DEVICES)
        if number >= len(messages):
            messages += _messages(platform.app, 1, later)
        rows = min(ROWS_PER_STATEMENT, args.rows - seeded, CAMPAIGN_DEVICES - offset)
        _seed_rows(messages[number], rows, seq=-(1000 + number), device_offset=offset)
        seeded += rows
    _seed_attempts(messages[0], every=NATIVE_EVERY)
    seed_s = time.monotonic() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE devices_delivery")
        cursor.execute("VACUUM ANALYZE native_nativeattempt")
        cursor.execute("SELECT pg_total_relation_size('devices_delivery')")
        table_bytes = cursor.fetchone()[0]
    total = seeded
    client = _admin_client()
    timings = {
        "admin_index": _timed(lambda: client.get("/admin/")),
        "campaign_page": _timed(
            lambda: client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
        ),
        "campaign_stats_json": _timed(
            lambda: client.get(f"/admin/campaigns/campaign/{campaign.pk}/stats.json")
        ),
    }
    from devices.delivery.stats import message_stats
    from devices.native.selectors import channel_stats

    hour_ago = now - timedelta(hours=1)
    split = channel_stats(campaign.message_id)
    parts = {
        "message_stats": _timed_query(lambda: message_stats(campaign.message_id)),
        "channel_stats": _timed_query(lambda: channel_stats(campaign.message_id)),
    }
    old_counts = {
        "count_campaign_rows": _timed_query(
            lambda: Delivery.objects.filter(message_id=campaign.message_id).count()
        ),
        "count_delivered_last_hour": _timed_query(
            lambda: Delivery.objects.filter(delivered_at__gte=hour_ago).count()
        ),
        "count_channel_split": _timed_query(
            lambda: _channel_split_counted(campaign.message_id)
        ),
    }
    figures: dict[str, Any] = {"rows": total, "seed_s": round(seed_s, 1)}
    figures["table_gb"] = round(table_bytes / 2**30, 2)
    for name, (median, worst, status) in timings.items():
        figures[f"{name}_ms"] = median
        figures[f"{name}_max_ms"] = worst
        figures[f"{name}_status"] = status
    for name, (median, _worst, _status) in old_counts.items():
        figures[f"before_{name}_ms"] = median
    for name, (median, _worst, _status) in parts.items():
        figures[f"part_{name}_ms"] = median
    figures["native_attempts"] = split["accepted_webpush"]
    figures["checks"] = {
        f"{name} under 300 ms": timings[name][0] < 300 and timings[name][2] == 200
        for name in ("admin_index", "campaign_page")
    }
    figures["checks"]["channel split equals the rows"] = split == {
        **split,
        **_channel_split_counted(campaign.message_id),
    }
    return figures


def _messages(app: Any, count: int, expires_at: Any) -> list[Any]:
    from devices.models import Message

    return Message.objects.bulk_create(
        [
            Message(app=app, title=f"seeded {i}", expires_at=expires_at)
            for i in range(count)
        ]
    )


def _campaign_of(app: Any, message: Any) -> Any:
    from campaigns.models import Campaign, CampaignMessage, CampaignStatus

    campaign = Campaign.objects.create(
        app=app,
        name=f"seeded {time.time()}",
        title="Seeded",
        message=message,
        status=CampaignStatus.SENT,
    )
    # The campaign's stats sum the messages it sent (campaigns.content).
    CampaignMessage.objects.create(
        campaign=campaign, message=message, content_hash="seeded"
    )
    return campaign


def _seed_rows(message: Any, rows: int, *, seq: int, device_offset: int) -> None:
    """`rows` delivery rows of one message in one statement: delivered,
    opened or expired, on device ids made from their number."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO devices_delivery (message_id, device_id, seq, status, "
            "created_at, expires_at, sent_at, delivered_at, opened_at) "
            "SELECT %s, md5('dev' || i)::uuid, %s, "
            "CASE WHEN i %% 10 = 0 THEN 'expired' WHEN i %% 4 = 0 THEN 'opened' "
            "ELSE 'delivered' END, m.created_at, m.expires_at, "
            "CASE WHEN i %% 10 = 0 THEN NULL ELSE m.created_at END, "
            "CASE WHEN i %% 10 = 0 THEN NULL ELSE m.created_at END, "
            "CASE WHEN i %% 10 <> 0 AND i %% 4 = 0 THEN m.created_at END "
            "FROM generate_series(%s, %s) AS i, devices_message m WHERE m.id = %s",
            [message.pk, seq, device_offset, device_offset + rows - 1, message.pk],
        )


def _seed_attempts(message: Any, *, every: int) -> None:
    """A Web Push attempt for every `every`-th delivery of a message:
    accepted, a quarter of them confirmed by the device, one in ten
    failed; then their channel counters, as migration native 0004 counts
    attempts made before the counters."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO native_nativeattempt (delivery_id, channel, status, "
            "reason, attempts, created_at, updated_at, device_seen_at) "
            "SELECT d.id, 'webpush', CASE WHEN d.id / %s %% 10 = 0 THEN 'failed' "
            "ELSE 'accepted' END, '', 1, d.created_at, d.created_at, "
            "CASE WHEN d.id / %s %% 4 = 1 AND d.id / %s %% 10 <> 0 "
            "THEN d.created_at END "
            "FROM devices_delivery d WHERE d.message_id = %s AND d.id %% %s = 0",
            [every, every, every, message.pk, every],
        )
        cursor.execute(
            "INSERT INTO native_channelcount (message_id, shard, channel, "
            "accepted, failed, retrying, delivered) "
            "SELECT %s, -1, 'webpush', "
            "count(*) FILTER (WHERE a.status = 'accepted'), "
            "count(*) FILTER (WHERE a.status = 'failed'), "
            "count(*) FILTER (WHERE a.status = 'retry'), "
            "count(a.device_seen_at) FROM native_nativeattempt a "
            "JOIN devices_delivery d ON d.id = a.delivery_id "
            "WHERE d.message_id = %s",
            [message.pk, message.pk],
        )


def _channel_split_counted(message_id: Any) -> dict[str, int]:
    """The split as the campaign page counted it before the counters: the
    attempts of the message grouped, and its delivered rows counted."""
    from django.db.models import Count

    from devices.models import Delivery
    from devices.native.models import NativeAttempt

    split = {"accepted_webpush": 0, "delivered_webpush": 0, "native_failed": 0}
    rows = (
        NativeAttempt.objects.filter(delivery__message_id=message_id, channel="webpush")
        .values("status")
        .annotate(n=Count("pk"), seen=Count("device_seen_at"))
    )
    for row in rows:
        split["delivered_webpush"] += row["seen"]
        if row["status"] == "accepted":
            split["accepted_webpush"] += row["n"]
        elif row["status"] == "failed":
            split["native_failed"] += row["n"]
    delivered = Delivery.objects.filter(
        message_id=message_id, delivered_at__isnull=False
    ).count()
    split["delivered_socket"] = delivered - split["delivered_webpush"]
    return split


def _admin_client() -> Any:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first()
    if user is None:
        user = user_model.objects.create_superuser("bench-admin", "", None)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return client


def _timed(call: Any) -> tuple[float, float, int]:
    call()  # warm: templates, the plan cache
    times, status = [], 0
    for _ in range(PAGE_REPEATS):
        started = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return round(statistics.median(times), 1), round(max(times), 1), status


def _timed_query(call: Any) -> tuple[float, float, int]:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1), round(max(times), 1), 0
