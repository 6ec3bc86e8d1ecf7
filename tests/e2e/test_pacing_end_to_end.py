"""Quiet hours and a frequency cap on real servers: devices connected to a
real Daphne, in two zones, get a campaign now or when quiet hours end in
their zone; a device at its cap gets nothing. The scheduler is driven here
with an injected clock (the servers, the database and Redis are real)."""

import asyncio
from datetime import UTC, datetime, time, timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from campaigns import lifecycle, pacing, sender
from campaigns.models import Campaign, CampaignStatus
from campaigns.selectors import campaign_stats
from devices.models import App, Device
from tests.e2e.servers import daphne_servers
from tests.factories import make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def afternoon_in_paris() -> datetime:
    """Tomorrow 14:00 UTC: 15:00 or 16:00 in Paris, 23:00 in Tokyo; in the
    future, so the deliveries' TTL runs on the servers' real clock."""
    tomorrow = (timezone.now() + timedelta(days=1)).date()
    return datetime.combine(tomorrow, time(14, 0), tzinfo=UTC)


def setup_world():
    app = make_app(name="Shop", default_timezone="Europe/Paris")
    App.objects.filter(pk=app.pk).update(
        frequency_cap_count=1,
        frequency_cap_window_seconds=86400,
        quiet_hours_start=time(22, 0),
        quiet_hours_end=time(8, 0),
    )
    app.refresh_from_db()
    devices = {
        "paris": make_device(app, timezone="Europe/Paris"),
        "no zone": make_device(app),  # the app's default: Paris
        "capped": make_device(app, timezone="Europe/Paris"),
        "tokyo 1": make_device(app, timezone="Asia/Tokyo"),
        "tokyo 2": make_device(app, timezone="Asia/Tokyo"),
    }
    return app, {name: (d.pk, token) for name, (d, token) in devices.items()}


def send_at(app, now, **fields):
    campaign = lifecycle.campaign_create(app=app, title=fields["name"], **fields)
    lifecycle.campaign_schedule_now(campaign=campaign, now=now)
    sender.send_due(now=now)
    return Campaign.objects.get(pk=campaign.pk)


async def online_count() -> int:
    return await database_sync_to_async(
        Device.objects.filter(node__isnull=False).count
    )()


async def nothing_for(client: DeviceClient, seconds: float) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await client.receive_push(timeout=seconds)


async def test_a_quiet_zone_gets_the_campaign_when_its_night_ends_and_capped_none(
    redis_url, tmp_path
):
    app, devices = await database_sync_to_async(setup_world)()
    t0 = afternoon_in_paris()
    tokyo_morning = t0 + timedelta(hours=9)  # 08:00 JST
    with daphne_servers(1, redis_url=redis_url, tmp_path=tmp_path) as servers:
        clients = {}
        for name, (_pk, token) in devices.items():
            clients[name] = DeviceClient(servers[0].ws_url, token)
            await clients[name].connect()
        for _ in range(100):
            if await online_count() == len(devices):
                break
            await asyncio.sleep(0.05)
        # The capped device had its one counted push of the day an hour ago.
        await database_sync_to_async(send_at)(
            app,
            t0 - timedelta(hours=1),
            name="Earlier",
            audience_kind="devices",
            audience={"device_ids": [str(devices["capped"][0])]},
        )
        earlier = await clients["capped"].receive_push(timeout=10)
        assert earlier.title == "Earlier"
        await clients["capped"].ack(earlier)

        campaign = await database_sync_to_async(send_at)(
            app, t0, name="Flash sale", audience_kind="all"
        )
        for name in ("paris", "no zone"):
            push = await clients[name].receive_push(timeout=10)
            assert push.title == "Flash sale"
            await clients[name].ack(push)
        for name in ("tokyo 1", "tokyo 2", "capped"):
            await nothing_for(clients[name], 1.5)
        assert campaign.status == CampaignStatus.SENDING

        # The scheduler a second before 08:00 in Tokyo, then at 08:00.
        await database_sync_to_async(sender.send_due)(
            now=tokyo_morning - timedelta(seconds=1)
        )
        await nothing_for(clients["tokyo 1"], 1.0)
        await database_sync_to_async(sender.send_due)(now=tokyo_morning)
        for name in ("tokyo 1", "tokyo 2"):
            push = await clients[name].receive_push(timeout=10)
            assert push.title == "Flash sale"
            await clients[name].ack(push)
        await nothing_for(clients["capped"], 1.0)

        def figures():
            fresh = Campaign.objects.get(pk=campaign.pk)
            return (
                fresh.status,
                campaign_stats(fresh),
                pacing.campaign_pacing_stats(fresh),
            )

        for _ in range(100):
            status, stats, paced = await database_sync_to_async(figures)()
            if stats["delivered"] == 4:
                break
            await asyncio.sleep(0.1)
        assert status == CampaignStatus.SENT
        assert (stats["targeted"], stats["delivered"]) == (4, 4)
        assert paced == {"capped": 1, "deferred": 2, "skipped": 0}
        for client in clients.values():
            await client.close()
