"""Canary campaigns to devices connected to two real Daphne processes
(PostgreSQL, Redis), judged by the scheduler's step with an injected clock:
when most of the first wave never acks, the campaign aborts after that wave
and the rest receive nothing (and, set to recall on abort, the first wave is
sent the recall frame); when the first wave acks, the next wave goes out and
every device gets exactly one push."""

import asyncio
from datetime import timedelta

import httpx
import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from campaigns import canary, content, lifecycle, sender
from campaigns.models import Campaign
from devices.delivery.protocol import Recall
from devices.models import Delivery, DeliveryStatus, Device
from tests.e2e.servers import daphne_servers
from tests.factories import make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEVICES = 30
WAVES = [30, 100]
HOLD = 600


def setup_world(**thresholds):
    app = make_app(name="Shop")
    devices = [make_device(app) for _ in range(DEVICES)]
    thresholds = thresholds or {"canary_min_delivery_rate": 90}
    campaign = lifecycle.campaign_create(
        app=app,
        name="Staged",
        title="New checkout",
        wave_percents=WAVES,
        wave_hold_seconds=HOLD,
        canary_action="abort",
        **thresholds,
    )
    return campaign, devices


def first_wave(campaign, devices):
    return {
        device.pk
        for device, _token in devices
        if canary.wave_of(content.device_bucket(campaign.pk, device.pk), WAVES) == 0
    }


async def connect_all(servers, devices):
    clients = {}
    for index, (device, token) in enumerate(devices):
        client = DeviceClient(servers[index % 2].ws_url, token)
        await client.connect()
        clients[device.pk] = client
    for _ in range(100):
        online = await database_sync_to_async(
            Device.objects.filter(node__isnull=False).count
        )()
        if online == DEVICES:
            break
        await asyncio.sleep(0.05)
    return clients


async def delivered_count(campaign):
    return await database_sync_to_async(
        Delivery.objects.filter(
            message__campaign_link__campaign=campaign, delivered_at__isnull=False
        ).count
    )()


async def wait_delivered(campaign, expected):
    for _ in range(200):
        if await delivered_count(campaign) >= expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await delivered_count(campaign)} of {expected} acked")


async def test_a_first_wave_that_never_acks_aborts_and_the_rest_get_nothing(
    redis_url, tmp_path
):
    campaign, devices = await database_sync_to_async(setup_world)()
    first = first_wave(campaign, devices)
    assert 0 < len(first) < DEVICES
    # The injected bad signal: all but one of the first wave never ack.
    acking = sorted(first)[:1]
    with daphne_servers(2, redis_url=redis_url, tmp_path=tmp_path) as servers:
        clients = await connect_all(servers, devices)
        await database_sync_to_async(sender.campaign_send_now)(campaign=campaign)
        for device_id in first:
            push = await clients[device_id].receive_push(timeout=10)
            assert push.title == "New checkout"
            if device_id in acking:
                await clients[device_id].ack(push)
        await wait_delivered(campaign, len(acking))
        now = timezone.now()
        await database_sync_to_async(sender.send_due)(now=now)
        # The scheduler's step, its clock past the hold.
        later = now + timedelta(seconds=HOLD + 1)
        judged = await database_sync_to_async(canary.waves_judge_due)(now=later)
        assert judged == 1
        await database_sync_to_async(sender.send_due)(now=later)
        for client in clients.values():
            with pytest.raises(asyncio.TimeoutError):
                await client.receive_push(timeout=0.3)
        campaign = await database_sync_to_async(Campaign.objects.get)(pk=campaign.pk)
        assert campaign.status == "cancelled"
        rate = round(100 * len(acking) / len(first))
        assert campaign.canary_reason.startswith(
            f"Wave 1: delivery rate {rate}% < 90%: aborted at"
        )
        rows = await database_sync_to_async(
            lambda: dict(
                Delivery.objects.filter(
                    message__campaign_link__campaign=campaign
                ).values_list("device_id", "status")
            )
        )()
        assert set(rows) == first  # nobody outside the first wave
        assert {rows[d] for d in acking} == {DeliveryStatus.DELIVERED}
        for client in clients.values():
            await client.close()


async def test_a_first_wave_that_acks_lets_the_campaign_reach_everyone(
    redis_url, tmp_path
):
    campaign, devices = await database_sync_to_async(setup_world)()
    first = first_wave(campaign, devices)
    with daphne_servers(2, redis_url=redis_url, tmp_path=tmp_path) as servers:
        clients = await connect_all(servers, devices)
        await database_sync_to_async(sender.campaign_send_now)(campaign=campaign)
        for device_id in first:
            await clients[device_id].ack(
                await clients[device_id].receive_push(timeout=10)
            )
        for device_id, client in clients.items():
            if device_id not in first:
                with pytest.raises(asyncio.TimeoutError):
                    await client.receive_push(timeout=0.3)
        await wait_delivered(campaign, len(first))
        now = timezone.now()
        await database_sync_to_async(sender.send_due)(now=now)
        later = now + timedelta(seconds=HOLD + 1)
        assert await database_sync_to_async(canary.waves_judge_due)(now=later) == 1
        await database_sync_to_async(sender.send_due)(now=later)
        for device_id, client in clients.items():
            if device_id not in first:
                await client.ack(await client.receive_push(timeout=10))
        for client in clients.values():
            with pytest.raises(asyncio.TimeoutError):
                await client.receive_push(timeout=0.3)
        await wait_delivered(campaign, DEVICES)
        await database_sync_to_async(sender.send_due)(now=later)
        campaign = await database_sync_to_async(Campaign.objects.get)(pk=campaign.pk)
        assert campaign.status == "sent" and campaign.wave == 1
        count = await database_sync_to_async(
            Delivery.objects.filter(message__campaign_link__campaign=campaign).count
        )()
        assert count == DEVICES  # exactly one push each
        for client in clients.values():
            await client.close()


async def test_crash_events_reported_over_http_abort_after_the_first_wave(
    redis_url, tmp_path
):
    campaign, devices = await database_sync_to_async(setup_world)(
        canary_event_name="crash", canary_max_event_rate=10
    )
    first = first_wave(campaign, devices)
    tokens = {device.pk: token for device, token in devices}
    crashing = sorted(first)[: len(first) // 2 + 1]
    with daphne_servers(2, redis_url=redis_url, tmp_path=tmp_path) as servers:
        clients = await connect_all(servers, devices)
        await database_sync_to_async(sender.campaign_send_now)(campaign=campaign)
        async with httpx.AsyncClient(base_url=servers[1].http_url, timeout=10) as http:
            for device_id in first:
                push = await clients[device_id].receive_push(timeout=10)
                await clients[device_id].ack(push)
                if device_id in crashing:
                    # The app, as the SDK's integrator would: one crash report.
                    response = await http.post(
                        "/api/v1/device/events",
                        json={"message_id": push.id, "name": "crash"},
                        headers={"Authorization": f"Device {tokens[device_id]}"},
                    )
                    assert response.status_code == 200, response.text
                    assert response.json() == {"recorded": True}
        await wait_delivered(campaign, len(first))
        now = timezone.now()
        await database_sync_to_async(sender.send_due)(now=now)
        later = now + timedelta(seconds=HOLD + 1)
        assert await database_sync_to_async(canary.waves_judge_due)(now=later) == 1
        await database_sync_to_async(sender.send_due)(now=later)
        for client in clients.values():
            with pytest.raises(asyncio.TimeoutError):
                await client.receive_push(timeout=0.3)
        campaign = await database_sync_to_async(Campaign.objects.get)(pk=campaign.pk)
        assert campaign.status == "cancelled"
        rate = round(100 * len(crashing) / len(first))
        assert campaign.canary_reason.startswith(
            f"Wave 1: crash rate {rate}% > 10%: aborted at"
        )
        received = await database_sync_to_async(
            lambda: set(
                Delivery.objects.filter(
                    message__campaign_link__campaign=campaign
                ).values_list("device_id", flat=True)
            )
        )()
        assert received == first
        for client in clients.values():
            await client.close()


async def receive_recall(client, timeout=10):
    while True:
        frame = await client.receive(timeout)
        if isinstance(frame, Recall):
            return frame


async def test_an_abort_set_to_recall_takes_the_push_back_from_the_first_wave(
    redis_url, tmp_path
):
    campaign, devices = await database_sync_to_async(setup_world)(
        canary_min_delivery_rate=90, canary_recall_on_abort=True
    )
    first = first_wave(campaign, devices)
    acking = sorted(first)[:1]
    with daphne_servers(2, redis_url=redis_url, tmp_path=tmp_path) as servers:
        clients = await connect_all(servers, devices)
        await database_sync_to_async(sender.campaign_send_now)(campaign=campaign)
        pushes = {}
        for device_id in first:
            pushes[device_id] = await clients[device_id].receive_push(timeout=10)
            if device_id in acking:
                await clients[device_id].ack(pushes[device_id])
        await wait_delivered(campaign, len(acking))
        now = timezone.now()
        await database_sync_to_async(sender.send_due)(now=now)
        later = now + timedelta(seconds=HOLD + 1)
        assert await database_sync_to_async(canary.waves_judge_due)(now=later) == 1
        await database_sync_to_async(sender.send_due)(now=later)
        # Every device of the first wave is told to remove what it showed,
        # acked or not; the others are sent neither the push nor a recall.
        for device_id in first:
            recall = await receive_recall(clients[device_id])
            assert recall.id == pushes[device_id].id
            assert recall.seq > pushes[device_id].seq
        for device_id, client in clients.items():
            with pytest.raises(asyncio.TimeoutError):
                frame = await client.receive(timeout=0.3)
                raise AssertionError(f"{device_id} got {frame}")
        campaign = await database_sync_to_async(Campaign.objects.get)(pk=campaign.pk)
        assert campaign.status == "cancelled"
        assert campaign.canary_reason.endswith(f"; recalled from {len(first)} devices")
        rows = await database_sync_to_async(
            lambda: dict(
                Delivery.objects.filter(
                    message__campaign_link__campaign=campaign
                ).values_list("device_id", "status")
            )
        )()
        assert set(rows) == first
        assert {rows[d] for d in first - set(acking)} == {DeliveryStatus.CANCELLED}
        for client in clients.values():
            await client.close()
