"""Core guards added for issue 7, through the consumer (no Daphne needed).

* at most MAX_UNACKED pushes in flight: a live socket further behind is
  closed with 4429; a replay waits for acks instead of flooding the socket;
* at most MAX_FRAMES_PER_SECOND inbound frames (token bucket): `rate_limited`
  error frames, then 4400 for a socket that keeps flooding;
* node heartbeats: a node that was cut off from the database does not
  declare the others dead when it comes back, and a node judged dead
  restores the presence of the devices it still holds.
"""

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from devices.delivery import pushes, resume
from devices.delivery.node import Node
from devices.delivery.protocol import JSON, Ack, Error, Hello, Ping, Pong, Push, Welcome
from devices.models import Device
from devices.models import Node as NodeRow
from kpns_site.asgi import application
from tests.factories import make_app, make_device
from tests.receipts import DeviceLog, check, rows_from_orm

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("stop_nodes"),
]


async def open_socket(token):
    communicator = WebsocketCommunicator(
        application,
        "/ws/v1/device/",
        subprotocols=["kpns.json.v1", f"kpns.token.{token}"],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def send(communicator, frame):
    await communicator.send_to(text_data=JSON.encode(frame))


async def receive(communicator, timeout=5):
    message = await communicator.receive_output(timeout)
    if message["type"] == "websocket.close":
        return message
    return JSON.decode_server(message["text"])


async def setup(count=1):
    app = await database_sync_to_async(make_app)()
    devices = [await database_sync_to_async(make_device)(app) for _ in range(count)]
    return app, devices


def push_many(app, device, n, prefix="m"):
    for i in range(n):
        pushes.push_to_devices(app=app, device_ids=[device.pk], title=f"{prefix}{i}")


async def test_replay_is_paced_by_the_window_and_completes_with_acks(settings):
    settings.KPNS = {**settings.KPNS, "MAX_UNACKED": 5}
    app, [(device, token)] = await setup()
    await database_sync_to_async(push_many)(app, device, 12)
    communicator = await open_socket(token)
    await send(communicator, Hello(last_seq=0))
    assert isinstance(await receive(communicator), Welcome)
    log = DeviceLog(str(device.pk))
    first = [await receive(communicator) for _ in range(5)]
    assert [p.seq for p in first] == [1, 2, 3, 4, 5]
    # The window is full: nothing more until the device acks.
    assert await communicator.receive_nothing(0.3)
    for push in first:
        log.record(push.id, push.seq)
    for push in first:
        await send(communicator, Ack(id=push.id, seq=push.seq))
    while log.last_seq < 12:
        push = await receive(communicator)
        assert isinstance(push, Push), push
        log.record(push.id, push.seq)
        await send(communicator, Ack(id=push.id, seq=push.seq))
    assert [r.seq for r in log.receipts] == list(range(1, 13))
    rows = await database_sync_to_async(rows_from_orm)([device.pk])
    check([log], rows).assert_ok()
    await communicator.disconnect()


async def test_live_socket_too_far_behind_is_closed_with_4429_and_resumes(settings):
    settings.KPNS = {**settings.KPNS, "MAX_UNACKED": 5}
    app, [(device, token)] = await setup()
    communicator = await open_socket(token)
    await send(communicator, Hello(last_seq=0))
    assert isinstance(await receive(communicator), Welcome)
    await database_sync_to_async(push_many)(app, device, 8)
    log = DeviceLog(str(device.pk))
    frames = []
    while True:
        frame = await receive(communicator)
        if isinstance(frame, dict):
            break
        frames.append(frame)
    assert frame == {"type": "websocket.close", "code": 4429}
    assert [p.seq for p in frames] == [1, 2, 3, 4, 5]
    # The app processed only the first three before the close.
    for push in frames[:3]:
        log.record(push.id, push.seq)
    await communicator.disconnect()
    log.new_connection()
    again = await open_socket(token)
    await send(again, Hello(last_seq=log.last_seq))
    assert isinstance(await receive(again), Welcome)
    while log.last_seq < 8:
        push = await receive(again)
        log.record(push.id, push.seq)
        await send(again, Ack(id=push.id, seq=push.seq))
    rows = await database_sync_to_async(rows_from_orm)([device.pk])
    verdict = check([log], rows)
    verdict.assert_ok()
    assert verdict.owed == 8
    await again.disconnect()


async def test_frame_flood_gets_rate_limited_then_closed_with_4400(settings):
    settings.KPNS = {
        **settings.KPNS,
        "MAX_FRAMES_PER_SECOND": 10,
        "FRAME_BURST": 10,
        "RATE_LIMIT_CLOSE_AFTER": 30,
    }
    _app, [(_device, token)] = await setup()
    communicator = await open_socket(token)
    for t in range(60):
        await send(communicator, Ping(t=t))
    pongs, errors, closed = 0, [], None
    while True:
        frame = await receive(communicator)
        if isinstance(frame, dict):
            closed = frame
            break
        if isinstance(frame, Pong):
            pongs += 1
        elif isinstance(frame, Error):
            errors.append(frame.code)
    assert pongs <= 11
    assert errors and set(errors) == {"rate_limited"}
    assert closed == {"type": "websocket.close", "code": 4400}


async def test_frames_within_the_rate_are_all_served(settings):
    settings.KPNS = {**settings.KPNS, "MAX_FRAMES_PER_SECOND": 50, "FRAME_BURST": 20}
    _app, [(_device, token)] = await setup()
    communicator = await open_socket(token)
    for t in range(40):
        await send(communicator, Ping(t=t))
        await asyncio.sleep(0.025)  # 40/s
    got = [await receive(communicator) for _ in range(40)]
    assert [f.t for f in got] == list(range(40))
    await communicator.disconnect()


def _age_nodes(seconds):
    NodeRow.objects.update(
        heartbeat_at=timezone.now() - timezone.timedelta(seconds=seconds)
    )


async def test_node_back_from_an_outage_does_not_judge_others_dead(settings):
    """Regression: after a database outage longer than NODE_DEAD_AFTER, the
    first node to heartbeat cleared every other node's devices."""
    settings.KPNS = {**settings.KPNS, "NODE_DEAD_AFTER_SECONDS": 20.0}
    _app, [(device, _token)] = await setup()
    other = Node()
    await database_sync_to_async(other._register_row)()
    await database_sync_to_async(resume.device_connect)(
        device_id=device.pk, node=other.name, connection_id="c1", last_seq=0
    )
    me = Node()
    await database_sync_to_async(me._register_row)()
    await database_sync_to_async(_age_nodes)(60)  # nobody could heartbeat
    # Our first heartbeat after the outage: not yet healthy long enough.
    await database_sync_to_async(me._heartbeat)(False, [])
    fresh = await database_sync_to_async(Device.objects.get)(pk=device.pk)
    assert fresh.node == other.name
    # A node that stays silent while we are healthy is judged dead.
    await database_sync_to_async(me._heartbeat)(True, [])
    fresh = await database_sync_to_async(Device.objects.get)(pk=device.pk)
    assert fresh.node is None


async def test_node_judged_dead_restores_its_devices_presence():
    _app, [(device, token)] = await setup()
    communicator = await open_socket(token)
    await send(communicator, Hello(last_seq=0))
    assert isinstance(await receive(communicator), Welcome)
    fresh = await database_sync_to_async(Device.objects.get)(pk=device.pk)
    node_name = fresh.node
    assert node_name
    # Another node judged ours dead (e.g. it was stopped for a while).
    await database_sync_to_async(resume.presence_clear_nodes)(nodes=[node_name])
    await database_sync_to_async(NodeRow.objects.filter(name=node_name).delete)()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fresh = await database_sync_to_async(Device.objects.get)(pk=device.pk)
        if fresh.node == node_name:
            break
        await asyncio.sleep(0.1)
    assert fresh.node == node_name
    assert await database_sync_to_async(NodeRow.objects.filter(name=node_name).exists)()
    await communicator.disconnect()


async def test_acks_are_recorded_while_channels_orm_thread_is_busy():
    """Receipts are written on a thread of their own: an ORM call that holds
    Channels' one worker thread (a mass disconnect, a slow query) does not
    hold back the recording of acks."""
    app, [(device, token)] = await setup()
    await database_sync_to_async(push_many)(app, device, 1)
    communicator = await open_socket(token)
    await send(communicator, Hello(last_seq=0))
    assert isinstance(await receive(communicator), Welcome)
    push = await receive(communicator)
    assert isinstance(push, Push)
    release = threading.Event()
    # Thread-sensitive, so it runs in (and holds) the one worker thread.
    blocker = asyncio.ensure_future(sync_to_async(release.wait)(30))
    try:
        await asyncio.sleep(0.1)
        assert not blocker.done()
        await send(communicator, Ack(id=push.id, seq=push.seq))
        delivered = sync_to_async(_delivered_at, thread_sensitive=False)
        recorded = None
        for _ in range(100):  # 5 s
            recorded = await delivered(device.pk)
            if recorded is not None:
                break
            await asyncio.sleep(0.05)
        assert recorded is not None
        assert not blocker.done()  # recorded while the thread was still held
    finally:
        release.set()
        await blocker
    await communicator.disconnect()


def _delivered_at(device_id):
    from django.db import connection

    from devices.models import Delivery

    try:
        return Delivery.objects.get(device_id=device_id).delivered_at
    finally:
        connection.close()  # this pool thread's connection, not left open
