"""The device consumer through channels.testing, on the configured layer."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from devices.delivery import pushes, revocation
from devices.delivery.protocol import JSON, KMPP, Ack, Hello, Ping, Pong, Push, Welcome
from devices.models import Delivery, DeliveryStatus, Device
from kpns_site.asgi import application
from tests.factories import make_app, make_device

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("stop_nodes"),
]


def subprotocols(token, encoding="kpns.json.v1"):
    return [encoding, f"kpns.token.{token}"]


async def open_socket(token, encoding="kpns.json.v1", headers=None):
    communicator = WebsocketCommunicator(
        application,
        "/ws/v1/device/",
        subprotocols=subprotocols(token, encoding),
        headers=headers or [],
    )
    connected, accepted = await communicator.connect(timeout=5)
    return communicator, connected, accepted


async def hello(communicator, codec=JSON, last_seq=0):
    await send(communicator, codec, Hello(last_seq=last_seq))
    welcome = await receive(communicator, codec)
    assert isinstance(welcome, Welcome)
    return welcome


async def send(communicator, codec, frame):
    data = codec.encode(frame)
    if isinstance(data, bytes):
        await communicator.send_to(bytes_data=data)
    else:
        await communicator.send_to(text_data=data)


async def receive(communicator, codec=JSON, timeout=5):
    message = await communicator.receive_output(timeout)
    assert message["type"] == "websocket.send", message
    return codec.decode_server(message.get("bytes") or message.get("text"))


async def setup_device(**fields):
    app = await database_sync_to_async(make_app)()
    device, token = await database_sync_to_async(make_device)(app, **fields)
    return app, device, token


async def test_valid_token_is_accepted_with_the_json_subprotocol():
    _app, device, token = await setup_device()
    communicator, connected, accepted = await open_socket(token)
    assert connected and accepted == "kpns.json.v1"
    welcome = await hello(communicator)
    assert welcome.device_id == str(device.pk)
    assert welcome.heartbeat == 25
    await communicator.disconnect()


async def test_an_open_socket_keeps_no_handshake_headers():
    """The header list (shared by every scope copy for the socket's life)
    is emptied once the checks that need it are done: memory per socket."""
    _app, _device, token = await setup_device()
    headers = [(b"user-agent", b"kpns-test/1.0"), (b"x-extra", b"x" * 500)]
    communicator, connected, _ = await open_socket(token, headers=headers)
    assert connected
    await hello(communicator)
    assert communicator.scope["headers"] == []
    await communicator.disconnect()


async def test_wrong_token_is_refused_before_accept():
    await setup_device()
    communicator, connected, code = await open_socket("not-a-real-token")
    assert not connected


async def test_missing_token_is_refused_before_accept():
    communicator = WebsocketCommunicator(
        application, "/ws/v1/device/", subprotocols=["kpns.json.v1"]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_a_socket_to_no_device_path_is_refused_not_an_error():
    _app, _device, token = await setup_device()
    for path in ("/ws/device/", "/ws/v2/device/", "/elsewhere"):
        communicator = WebsocketCommunicator(
            application, path, subprotocols=subprotocols(token, "kpns.json.v1")
        )
        connected, _ = await communicator.connect(timeout=5)
        assert not connected, path


async def test_revoked_device_is_refused():
    _app, device, token = await setup_device()
    await database_sync_to_async(revocation.device_revoke)(device=device)
    _c, connected, _ = await open_socket(token)
    assert not connected


async def test_foreign_and_null_origins_are_refused():
    _app, _device, token = await setup_device()
    for origin in (b"https://evil.example", b"null"):
        _c, connected, _ = await open_socket(token, headers=[(b"origin", origin)])
        assert not connected, origin
    communicator, connected, _ = await open_socket(
        token, headers=[(b"origin", b"http://127.0.0.1:8000")]
    )
    assert connected
    await communicator.disconnect()


async def test_malformed_frame_gets_an_error_frame_and_the_socket_stays_open():
    _app, _device, token = await setup_device()
    communicator, _, _ = await open_socket(token)
    await communicator.send_to(text_data="{not json")
    error = await receive(communicator)
    assert error.code == "bad_frame"
    await communicator.send_to(text_data='{"type":"launch"}')
    assert (await receive(communicator)).code == "unknown_type"
    await send(communicator, JSON, Ping(t=7))
    assert (await receive(communicator)).t == 7
    await communicator.disconnect()


async def test_ack_before_hello_is_not_ready():
    _app, _device, token = await setup_device()
    communicator, _, _ = await open_socket(token)
    await send(communicator, JSON, Ack(id="x", seq=1))
    assert (await receive(communicator)).code == "not_ready"
    await communicator.disconnect()


async def test_oversized_frame_closes_with_1009(fast_kpns):
    _app, _device, token = await setup_device()
    communicator, _, _ = await open_socket(token)
    await communicator.send_to(text_data="x" * (fast_kpns["MAX_FRAME_BYTES"] + 1))
    closed = await communicator.receive_output(5)
    assert closed == {"type": "websocket.close", "code": 1009}


async def test_push_reaches_online_device_and_ack_marks_it_delivered():
    app, device, token = await setup_device()
    communicator, _, _ = await open_socket(token)
    await hello(communicator)
    sent = await database_sync_to_async(pushes.push_to_devices)(
        app=app, device_ids=[device.pk], title="Hi", body="there"
    )
    push = await receive(communicator)
    assert isinstance(push, Push)
    assert (push.id, push.seq, push.title) == (str(sent[0].pk), 1, "Hi")
    await send(communicator, JSON, Ack(id=push.id, seq=push.seq))
    status = await wait_for_status(push.seq, device, DeliveryStatus.DELIVERED)
    assert status == DeliveryStatus.DELIVERED
    await communicator.disconnect()


async def test_offline_device_gets_missed_pushes_in_order_on_hello():
    app, device, token = await setup_device()
    for title in ("one", "two", "three"):
        await database_sync_to_async(pushes.push_to_devices)(
            app=app, device_ids=[device.pk], title=title
        )
    communicator, _, _ = await open_socket(token, "kmpp.v1")
    welcome = await hello(communicator, KMPP)
    assert welcome.last_seq == 3
    got = [await receive(communicator, KMPP) for _ in range(3)]
    assert [(p.seq, p.title) for p in got] == [(1, "one"), (2, "two"), (3, "three")]
    await communicator.disconnect()


async def test_hello_last_seq_counts_earlier_messages_as_delivered():
    app, device, token = await setup_device()
    for title in ("one", "two"):
        await database_sync_to_async(pushes.push_to_devices)(
            app=app, device_ids=[device.pk], title=title
        )
    communicator, _, _ = await open_socket(token)
    await hello(communicator, last_seq=1)
    push = await receive(communicator)
    assert (push.seq, push.title) == (2, "two")
    status = await wait_for_status(1, device, DeliveryStatus.DELIVERED)
    assert status == DeliveryStatus.DELIVERED
    await communicator.disconnect()


async def test_second_connection_replaces_the_first_with_4409():
    _app, device, token = await setup_device()
    first, _, _ = await open_socket(token)
    await hello(first)
    second, _, _ = await open_socket(token)
    await hello(second)
    closed = await first.receive_output(5)
    assert closed == {"type": "websocket.close", "code": 4409}
    online = await database_sync_to_async(
        lambda: Device.objects.get(pk=device.pk).online
    )()
    assert online
    await second.disconnect()


async def test_disconnect_marks_device_offline():
    _app, device, token = await setup_device()
    communicator, _, _ = await open_socket(token)
    await hello(communicator)
    assert await is_online(device)
    await communicator.disconnect()
    for _ in range(50):
        if not await is_online(device):
            break
        await asyncio.sleep(0.05)
    assert not await is_online(device)


async def test_a_closed_socket_does_not_wait_out_a_slow_presence_write(monkeypatch):
    """Daphne kills a consumer still running 10 s after its socket closed
    (and logs its task): the consumer stops waiting for its presence write
    after node.DETACH_WAIT_SECONDS, and the write still lands."""
    from devices.delivery import node as node_module
    from devices.delivery import resume

    _app, device, token = await setup_device()
    communicator, _, _ = await open_socket(token)
    await hello(communicator)
    assert await is_online(device)
    slow_database = threading.Event()
    real = resume.devices_disconnect

    def slow(**kwargs):
        slow_database.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(node_module, "DETACH_WAIT_SECONDS", 0.1)
    monkeypatch.setattr(resume, "devices_disconnect", slow)
    await communicator.disconnect(timeout=3)  # raises TimeoutError if it waited
    assert await is_online(device)  # the write is still waiting
    slow_database.set()
    for _ in range(100):
        if not await is_online(device):
            break
        await asyncio.sleep(0.05)
    assert not await is_online(device)


async def test_socket_without_hello_is_closed_after_the_hello_timeout(settings):
    settings.KPNS = {**settings.KPNS, "HELLO_TIMEOUT_SECONDS": 1}
    _app, _device, token = await setup_device()
    communicator, _, _ = await open_socket(token)
    closed = await communicator.receive_output(5)
    assert closed == {"type": "websocket.close", "code": 4408}


async def is_online(device):
    return await database_sync_to_async(
        lambda: Device.objects.get(pk=device.pk).online
    )()


async def wait_for_status(seq, device, wanted, timeout=5.0):
    get = database_sync_to_async(
        lambda: Delivery.objects.get(device=device, seq=seq).status
    )
    status = None
    for _ in range(int(timeout / 0.05)):
        status = await get()
        if status == wanted:
            break
        await asyncio.sleep(0.05)
    return status


@pytest.mark.parametrize("codec", [JSON, KMPP])
async def test_a_heartbeat_ping_without_t_gets_a_pong_without_t(codec):
    _app, _device, token = await setup_device()
    communicator, connected, _ = await open_socket(token, codec.name)
    assert connected
    for _ in range(2):  # the second answer comes from the per-codec cache
        await send(communicator, codec, Ping())
        assert await receive(communicator, codec) == Pong()
    await send(communicator, codec, Ping(t=7))
    assert await receive(communicator, codec) == Pong(t=7)
    if codec is JSON:  # not the SDKs' exact bytes: decoded, the same answer
        await communicator.send_to(text_data='{ "type" : "ping" }')
        assert await receive(communicator, codec) == Pong()
    await communicator.disconnect()
