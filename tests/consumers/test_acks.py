"""Acks under the inbound rate limit, cumulative acks (protocol 1.1), and
handshakes when the database fails (docs/protocol.md, docs/guarantees.md)."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError, ProgrammingError

from devices.delivery import pushes, resume
from devices.delivery.protocol import JSON, Ack, AckUpto, Error, Hello, Ping, Push
from devices.models import Delivery
from devices.registry import services as registry
from tests.consumers.test_device_consumer import (
    hello,
    open_socket,
    receive,
    send,
    setup_device,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("stop_nodes"),
]


@pytest.fixture
def tight_limit(settings):
    """An inbound limit far below the pushes the tests write."""
    settings.KPNS = {
        **settings.KPNS,
        "MAX_FRAMES_PER_SECOND": 2,
        "FRAME_BURST": 3,
        "RATE_LIMIT_CLOSE_AFTER": 5,
    }


async def queue_pushes(app, device, count):
    for n in range(count):
        await database_sync_to_async(pushes.push_to_devices)(
            app=app, device_ids=[device.pk], title=f"m{n}"
        )


async def replayed(communicator, count):
    frames = [await receive(communicator) for _ in range(count)]
    assert all(isinstance(f, Push) for f in frames), frames
    return frames


def statuses(device):
    return list(
        Delivery.objects.filter(device=device)
        .order_by("seq")
        .values_list("status", flat=True)
    )


async def settled(device, expected, timeout=5.0):
    """Wait for the receipts flush; the statuses by seq."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await database_sync_to_async(statuses)(device)
        if found == expected or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_acks_of_a_burst_are_never_rate_limited(tight_limit):
    """20 pushes acked one by one against a limit of 2 frames a second:
    every ack is recorded, no error frame, the socket stays open."""
    app, device, token = await setup_device()
    await queue_pushes(app, device, 20)
    communicator, connected, _ = await open_socket(token)
    assert connected
    await hello(communicator)
    for push in await replayed(communicator, 20):
        await send(communicator, JSON, Ack(id=push.id, seq=push.seq))
    assert await settled(device, ["delivered"] * 20) == ["delivered"] * 20
    assert await communicator.receive_nothing(0.2)
    await communicator.disconnect()


async def test_frames_that_do_no_work_are_still_limited_and_named(tight_limit):
    """Pings past the limit get rate_limited naming the frame; a repeated
    ack of an already acknowledged push is no longer free either."""
    app, device, token = await setup_device()
    await queue_pushes(app, device, 1)
    communicator, _, _ = await open_socket(token)
    await hello(communicator)
    [push] = await replayed(communicator, 1)
    await send(communicator, JSON, Ack(id=push.id, seq=push.seq))
    for _ in range(3):
        await send(communicator, JSON, Ack(id=push.id, seq=push.seq))
    error = await receive(communicator)
    assert isinstance(error, Error) and error.code == "rate_limited"
    assert error.ref == "ack"
    await communicator.disconnect()


async def test_ack_upto_acknowledges_every_push_up_to_its_seq():
    app, device, token = await setup_device()
    await queue_pushes(app, device, 10)
    communicator, _, _ = await open_socket(token)
    await hello(communicator)
    await replayed(communicator, 10)
    await send(communicator, JSON, AckUpto(seq=7))
    expected = ["delivered"] * 7 + ["sent"] * 3
    assert await settled(device, expected) == expected
    await send(communicator, JSON, AckUpto(seq=10))
    assert await settled(device, ["delivered"] * 10) == ["delivered"] * 10
    await communicator.disconnect()


async def test_ack_upto_above_what_was_sent_records_the_rest_and_says_so():
    app, device, token = await setup_device()
    await queue_pushes(app, device, 3)
    communicator, _, _ = await open_socket(token)
    await hello(communicator)
    await replayed(communicator, 3)
    await send(communicator, JSON, AckUpto(seq=99))
    error = await receive(communicator)
    assert isinstance(error, Error)
    assert (error.code, error.ref) == ("unknown_message", "ack_upto")
    assert "3" in error.message
    assert await settled(device, ["delivered"] * 3) == ["delivered"] * 3
    await communicator.disconnect()


async def test_ack_upto_in_kmpp():
    from devices.delivery.protocol import KMPP

    app, device, token = await setup_device()
    await queue_pushes(app, device, 2)
    communicator, _, accepted = await open_socket(token, encoding="kmpp.v1")
    assert accepted == "kmpp.v1"
    await send(communicator, KMPP, Hello(last_seq=0))
    await receive(communicator, KMPP)  # welcome
    for _ in range(2):
        assert isinstance(await receive(communicator, KMPP), Push)
    await communicator.send_to(bytes_data=bytes.fromhex("059102"))
    assert await settled(device, ["delivered"] * 2) == ["delivered"] * 2
    await communicator.disconnect()


async def test_a_hello_on_a_socket_refused_for_an_outage_does_not_raise(monkeypatch):
    """An SDK says hello at once; on a socket accepted only to be closed
    4503 that hello must be handled, not raise (it had no codec)."""
    _app, _device, token = await setup_device()

    def unreachable(**_kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(registry, "device_ids_authenticate", unreachable)
    communicator, connected, _ = await open_socket(token)
    assert connected
    closed = await communicator.receive_output(5)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4503)
    await communicator.send_to(text_data=JSON.encode(Hello(last_seq=0)))
    await communicator.send_to(text_data=JSON.encode(Ping(t=1)))
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await communicator.wait(5)  # re-raises what the consumer raised


async def test_a_database_error_that_is_not_an_outage_closes_4500(monkeypatch):
    _app, _device, token = await setup_device()

    def broken(**_kwargs):
        raise ProgrammingError("column does not exist")

    monkeypatch.setattr(resume, "devices_connect", broken)
    communicator, connected, _ = await open_socket(token)
    assert connected
    await send(communicator, JSON, Hello(last_seq=0))
    closed = await communicator.receive_output(5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4500
    await communicator.disconnect()
