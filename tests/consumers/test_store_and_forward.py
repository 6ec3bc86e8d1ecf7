"""Offline store-and-forward through the consumer: every valid message, in
order, once as the app sees it (resume from last_seq), never cancelled ones."""

from datetime import UTC, datetime

import pytest
from channels.db import database_sync_to_async

from campaigns import lifecycle, sender
from devices.delivery.protocol import JSON, Ack, Push
from devices.models import Delivery, DeliveryStatus
from tests.consumers.test_device_consumer import hello, open_socket, receive, send
from tests.factories import make_app, make_device

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("stop_nodes"),
]


def send_campaign(app, title, **fields):
    campaign = lifecycle.campaign_create(app=app, name=title, title=title, **fields)
    lifecycle.campaign_schedule_now(campaign=campaign)
    sender.send_due(now=datetime.now(UTC))
    campaign.refresh_from_db()
    return campaign


async def test_unacked_push_is_redelivered_with_the_same_id_and_seq_until_resumed():
    app = await database_sync_to_async(make_app)()
    _device, token = await database_sync_to_async(make_device)(app)
    await database_sync_to_async(send_campaign)(app, "one")

    first, _, _ = await open_socket(token)
    await hello(first)
    original = await receive(first)
    await first.disconnect()  # the app crashed before acking

    second, _, _ = await open_socket(token)
    await hello(second, last_seq=0)
    again = await receive(second)
    assert (again.id, again.seq) == (original.id, original.seq)
    await second.disconnect()

    third, _, _ = await open_socket(token)
    welcome = await hello(third, last_seq=original.seq)  # the app did process it
    assert welcome.last_seq == 1
    assert await third.receive_nothing(timeout=0.3)  # nothing is replayed
    await send(third, JSON, Ack(id="x", seq=99))
    error = await receive(third)
    assert (error.code, error.ref) == ("unknown_message", "ack")
    await third.disconnect()
    status = await database_sync_to_async(lambda: Delivery.objects.get(seq=1).status)()
    assert status == DeliveryStatus.DELIVERED


async def test_offline_device_gets_campaigns_in_send_order_but_not_cancelled_ones():
    app = await database_sync_to_async(make_app)()
    _device, token = await database_sync_to_async(make_device)(app)
    await database_sync_to_async(send_campaign)(app, "first")
    cancelled = await database_sync_to_async(send_campaign)(app, "withdrawn")
    await database_sync_to_async(lifecycle.campaign_cancel)(campaign=cancelled)
    await database_sync_to_async(send_campaign)(app, "third")

    communicator, _, _ = await open_socket(token)
    await hello(communicator)
    got = [await receive(communicator), await receive(communicator)]
    assert all(isinstance(frame, Push) for frame in got)
    assert [(p.title, p.seq) for p in got] == [("first", 1), ("third", 3)]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_push_batch_reaches_a_live_device_in_seq_order():
    from devices.delivery.targeting import push_send_batch

    app = await database_sync_to_async(make_app)()
    device, token = await database_sync_to_async(make_device)(app)
    communicator, _, _ = await open_socket(token)
    await hello(communicator)
    items = [
        {"device_ids": [device.pk], "title": f"batch {n}", "ttl_seconds": 60}
        for n in range(5)
    ]
    results = await database_sync_to_async(push_send_batch)(app=app, items=items)
    assert [r.targets for r in results] == [1] * 5
    pushes = [await receive(communicator) for _ in range(5)]
    assert [(p.seq, p.title) for p in pushes] == [
        (n + 1, f"batch {n}") for n in range(5)
    ]
    assert [p.id for p in pushes] == [str(r.message.id) for r in results]
    await communicator.disconnect()
