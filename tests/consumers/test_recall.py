"""Recall and update through the consumer (docs/guarantees.md, "Recall and
update"): control frames in seq order, acked like pushes, never the
withdrawn push to a device that had not received it."""

import pytest
from channels.db import database_sync_to_async

from devices.delivery import pushes, recall
from devices.delivery.protocol import JSON, KMPP, Ack, Push, Recall, Update
from devices.models import DeliveryStatus, Message
from tests.consumers.test_device_consumer import (
    hello,
    open_socket,
    receive,
    send,
    wait_for_status,
)
from tests.factories import make_app, make_device

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("stop_nodes"),
]


async def test_recall_reaches_online_and_returning_devices_never_the_unsent():
    app = await database_sync_to_async(make_app)()
    online, online_token = await database_sync_to_async(make_device)(app)
    had_it, had_token = await database_sync_to_async(make_device)(app)
    never, never_token = await database_sync_to_async(make_device)(app)

    # had_it receives and acks the push, then goes offline.
    had_socket, _, _ = await open_socket(had_token)
    await hello(had_socket)
    live, _, _ = await open_socket(online_token, "kmpp.v1")
    await hello(live, KMPP)
    message, _ = await database_sync_to_async(pushes.push_to_devices)(
        app=app, device_ids=[online.pk, had_it.pk, never.pk], title="Wrong price"
    )
    got = await receive(had_socket)
    await send(had_socket, JSON, Ack(id=got.id, seq=got.seq))
    await wait_for_status(1, had_it, DeliveryStatus.DELIVERED)
    await had_socket.disconnect()
    push = await receive(live, KMPP)
    assert isinstance(push, Push)
    await send(live, KMPP, Ack(id=push.id, seq=push.seq))
    await wait_for_status(1, online, DeliveryStatus.DELIVERED)

    result = await database_sync_to_async(recall.message_recall)(message=message)
    assert (result.targets, result.cancelled) == (2, 1)  # never's was pending

    frame = await receive(live, KMPP)
    assert frame == Recall(id=str(message.pk), seq=2)
    await send(live, KMPP, Ack(id=frame.id, seq=frame.seq))
    assert await wait_for_status(2, online, DeliveryStatus.DELIVERED) == "delivered"

    back, _, _ = await open_socket(had_token)
    await hello(back, last_seq=1)
    assert await receive(back) == Recall(id=str(message.pk), seq=2)
    await send(back, JSON, Ack(id=str(message.pk), seq=2))
    assert await wait_for_status(2, had_it, DeliveryStatus.DELIVERED) == "delivered"
    await back.disconnect()

    late, _, _ = await open_socket(never_token)
    welcome = await hello(late)
    assert welcome.last_seq == 1
    assert await late.receive_nothing(timeout=0.5)  # neither push nor recall
    await late.disconnect()
    await live.disconnect()

    counts = await database_sync_to_async(recall.control_counts)(message.pk)
    assert counts == {"recalled": 2, "updated": 0}


async def test_update_rewrites_what_is_pending_and_tells_who_has_it():
    app = await database_sync_to_async(make_app)()
    online, online_token = await database_sync_to_async(make_device)(app)
    offline, offline_token = await database_sync_to_async(make_device)(app)
    live, _, _ = await open_socket(online_token)
    await hello(live)
    message, _ = await database_sync_to_async(pushes.push_to_devices)(
        app=app, device_ids=[online.pk, offline.pk], title="Sale 10%"
    )
    push = await receive(live)
    await send(live, JSON, Ack(id=push.id, seq=push.seq))
    await wait_for_status(1, online, DeliveryStatus.DELIVERED)

    result = await database_sync_to_async(recall.message_update)(
        message=message, changes={"title": "Sale 20%", "data": {"pct": 20}}
    )
    assert result.targets == 1
    frame = await receive(live)
    assert isinstance(frame, Update)
    assert (frame.id, frame.seq, frame.title, frame.data) == (
        str(message.pk),
        2,
        "Sale 20%",
        {"pct": 20},
    )
    await send(live, JSON, Ack(id=frame.id, seq=frame.seq))
    await wait_for_status(2, online, DeliveryStatus.DELIVERED)
    await live.disconnect()

    # The offline device never had the old content: it gets the new one.
    late, _, _ = await open_socket(offline_token)
    await hello(late)
    got = await receive(late)
    assert isinstance(got, Push)
    assert (got.id, got.title, got.data) == (str(message.pk), "Sale 20%", {"pct": 20})
    assert await late.receive_nothing(timeout=0.3)
    await late.disconnect()
    stored = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert stored.title == "Sale 20%"


async def test_a_second_recall_sends_nothing_more():
    app = await database_sync_to_async(make_app)()
    device, token = await database_sync_to_async(make_device)(app)
    live, _, _ = await open_socket(token)
    await hello(live)
    message, _ = await database_sync_to_async(pushes.push_to_devices)(
        app=app, device_ids=[device.pk], title="Oops"
    )
    await receive(live)
    first = await database_sync_to_async(recall.message_recall)(message=message)
    second = await database_sync_to_async(recall.message_recall)(message=message)
    assert (first.targets, second.targets) == (1, 0)
    assert isinstance(await receive(live), Recall)
    assert await live.receive_nothing(timeout=0.3)
    await live.disconnect()
