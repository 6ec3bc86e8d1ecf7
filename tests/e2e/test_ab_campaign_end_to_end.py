"""A 2-variant A/B campaign with a test group, to devices connected to two
real Daphne processes (PostgreSQL, Redis): the test group gets the
variants, the winner chosen by the scheduler's step with an injected clock
goes to the rest, every device gets exactly one push, each in its own
language or the fallback."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from campaigns import abtest, content, lifecycle, sender
from campaigns.models import Campaign
from devices.delivery import receipts
from devices.models import Delivery, Device
from tests.e2e.servers import daphne_servers
from tests.factories import make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEVICES = 24
LOCALES = ["fr-FR", "fr-CA", "de-DE", "en-GB"]
TITLES = {
    ("A", "fr"): "A : -30 %",
    ("A", ""): "A: 30% off",
    ("B", "fr"): "B : livraison offerte",
    ("B", ""): "B: free shipping",
}


def setup_world():
    app = make_app(name="Shop")
    devices = [
        make_device(app, locale=LOCALES[i % len(LOCALES)]) for i in range(DEVICES)
    ]
    campaign = lifecycle.campaign_create(
        app=app,
        name="A/B",
        title=TITLES["A", ""],
        split_percent=50,
        variants=[{"key": "B", "split_percent": 50, "title": TITLES["B", ""],
                   "body": "", "url": "", "image": "", "data": {}}],
        languages=[
            {"variant": "A", "locale": "fr", "title": TITLES["A", "fr"]},
            {"variant": "B", "locale": "fr", "title": TITLES["B", "fr"]},
        ],
        test_percent=50,
        winner_metric="opened",
        winner_window_seconds=7200,
    )  # fmt: skip
    return campaign, [(device, token) for device, token in devices]


def expected_title(campaign, device, variant):
    language = "fr" if device.locale.startswith("fr") else ""
    return TITLES[variant, language]


def open_variant_b(campaign):
    rows = Delivery.objects.filter(
        message__campaign_link__campaign=campaign,
        message__campaign_link__variant="B",
    )
    receipts.receipts_record(
        receipts.Receipts(
            sent=[],
            delivered=[],
            opened=[(r.device_id, r.seq, str(r.message_id)) for r in rows],
        )
    )


async def online_count():
    return await database_sync_to_async(
        Device.objects.filter(node__isnull=False).count
    )()


async def test_ab_test_group_then_the_automatic_winner_to_the_rest(redis_url, tmp_path):
    campaign, devices = await database_sync_to_async(setup_world)()
    in_test = {
        device.pk: content.in_test_group(
            content.device_bucket(campaign.pk, device.pk), 50
        )
        for device, _token in devices
    }
    assert 0 < sum(in_test.values()) < DEVICES
    with daphne_servers(2, redis_url=redis_url, tmp_path=tmp_path) as servers:
        clients = {}
        for index, (device, token) in enumerate(devices):
            client = DeviceClient(servers[index % 2].ws_url, token)
            await client.connect()
            clients[device.pk] = (device, client)
        for _ in range(100):
            if await online_count() == DEVICES:
                break
            await asyncio.sleep(0.05)

        campaign = await database_sync_to_async(sender.campaign_send_now)(
            campaign=campaign
        )
        got = {}
        for device_id, (_device, client) in clients.items():
            if in_test[device_id]:
                push = await client.receive_push(timeout=10)
                await client.ack(push)
                got[device_id] = push
        for device_id, (_device, client) in clients.items():
            if not in_test[device_id]:
                with pytest.raises(asyncio.TimeoutError):
                    await client.receive_push(timeout=0.3)
        campaign = await database_sync_to_async(Campaign.objects.get)(pk=campaign.pk)
        assert campaign.status == "sending" and campaign.winner == ""
        await database_sync_to_async(open_variant_b)(campaign)

        # The scheduler's step, its clock two hours on: B won on opens.
        later = timezone.now() + timedelta(hours=2, seconds=1)
        decided = await database_sync_to_async(abtest.winners_decide_due)(now=later)
        assert decided == 1
        await database_sync_to_async(sender.send_due)(now=later)
        for device_id, (_device, client) in clients.items():
            if not in_test[device_id]:
                push = await client.receive_push(timeout=10)
                await client.ack(push)
                got[device_id] = push
        # Nobody gets a second push.
        for _device, client in clients.values():
            with pytest.raises(asyncio.TimeoutError):
                await client.receive_push(timeout=0.3)

        campaign = await database_sync_to_async(Campaign.objects.get)(pk=campaign.pk)
        assert campaign.winner == "B" and campaign.status == "sent"
        assert len(got) == DEVICES
        for device_id, (device, _client) in clients.items():
            bucket = content.device_bucket(campaign.pk, device_id)
            variant = (
                content.variant_for(bucket, [("A", 50), ("B", 50)], test_percent=50)
                if in_test[device_id]
                else "B"
            )
            assert got[device_id].title == expected_title(campaign, device, variant)
        rows = await database_sync_to_async(
            lambda: list(
                Delivery.objects.filter(
                    message__campaign_link__campaign=campaign
                ).values_list("device_id", flat=True)
            )
        )()
        assert sorted(rows) == sorted(clients)  # one delivery each
        for _device, client in clients.values():
            await client.close()
