"""Hostile and broken input: generated frames, a stateful device, oversized
frames and bodies. Nothing may crash a consumer or reach the log as an
unhandled exception; every answer is a valid server frame or a documented
close code.
"""

import asyncio
import contextlib
import json

import httpx
import msgpack
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from devices.delivery import pushes
from devices.delivery.protocol import (
    JSON,
    KMPP,
    Ack,
    Error,
    Hello,
    Ping,
    Pong,
    Push,
    Welcome,
)
from devices.models import Device
from kpns_site.asgi import application
from tests.factories import make_app, make_device

pytestmark = [pytest.mark.django_db(transaction=True)]

CLOSE_CODES = {4400, 1009}

# Frames ---------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
frame_types = st.sampled_from(["hello", "ack", "opened", "ping", "push", "welcome"]) | (
    st.text(max_size=12)
)
field_names = st.sampled_from(["type", "last_seq", "id", "seq", "t", "data"])
json_objects = st.fixed_dictionaries(
    {"type": frame_types},
    optional={name: json_values for name in ("last_seq", "id", "seq", "t")},
)


def _text_frames():
    return st.one_of(
        json_objects.map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=200),
        st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
        st.integers(min_value=1, max_value=3000).map(
            lambda n: '{"a":' * n + "1" + "}" * n
        ),
        st.just('{"type":"ack","id":"x","seq":1e400}'),
        st.just('{"type":"hello","last_seq":NaN}'),
        st.just('{"type":"ping","t":"\\ud800"}'),
    )


def _binary_frames():
    msgpack_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
    packable = st.recursive(
        st.none()
        | st.booleans()
        | msgpack_ints
        | st.text(max_size=20)
        | st.floats()
        | st.binary(max_size=20),
        lambda children: st.lists(children, max_size=4),
        max_leaves=10,
    )
    return st.one_of(
        st.binary(max_size=200),
        st.tuples(st.integers(0, 255), packable).map(
            lambda pair: bytes([pair[0]]) + msgpack.packb(pair[1], use_bin_type=True)
        ),
        st.integers(1, 2000).map(lambda n: b"\x01" + b"\x91" * n + b"\x00"),
    )


frames = st.one_of(
    _text_frames().map(lambda t: ("text", t)),
    _binary_frames().map(lambda b: ("bytes", b)),
)


# Helpers ---------------------------------------------------------------------


async def open_socket(token, encoding="kpns.json.v1"):
    communicator = WebsocketCommunicator(
        application,
        "/ws/v1/device/",
        subprotocols=[encoding, f"kpns.token.{token}"],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def send_frame(communicator, codec, frame):
    data = codec.encode(frame)
    if isinstance(data, bytes):
        await communicator.send_to(bytes_data=data)
    else:
        await communicator.send_to(text_data=data)


async def drain(communicator, codec, timeout=0.05):
    """Everything the server sent; raises if the consumer crashed."""
    out = []
    while not await communicator.receive_nothing(timeout):
        message = await communicator.receive_output(1)
        if message["type"] == "websocket.close":
            out.append(("close", message.get("code")))
            break
        data = (
            message.get("bytes")
            if message.get("bytes") is not None
            else message["text"]
        )
        out.append(("frame", codec.decode_server(data)))  # must be a valid frame
    return out


@pytest.fixture
def device_token(db):
    app = make_app()
    device, token = make_device(app)
    return app, device, token


# Generated frames through the consumer -----------------------------------------


@pytest.mark.usefixtures("stop_nodes")
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(frames, min_size=1, max_size=8), kmpp=st.booleans())
async def test_generated_frames_never_crash_the_consumer(device_token, batch, kmpp):
    _app, _device, token = device_token
    codec = KMPP if kmpp else JSON
    communicator = await open_socket(token, codec.name)
    try:
        await send_frame(communicator, codec, Hello(last_seq=0))
        for kind, data in batch:
            # send_input: the communicator's send_to refuses empty frames.
            await communicator.send_input({"type": "websocket.receive", kind: data})
        answers = await drain(communicator, codec)
        closes = [code for what, code in answers if what == "close"]
        assert set(closes) <= CLOSE_CODES, closes
        for what, frame in answers:
            if what == "frame":
                assert isinstance(frame, Welcome | Error | Pong | Push), frame
        if not closes:
            # Still serving: a ping is answered.
            await send_frame(communicator, codec, Ping(t=5))
            tail = await drain(communicator, codec, timeout=0.3)
            assert any(isinstance(f, Pong) for w, f in tail if w == "frame"), tail
    finally:
        await communicator.disconnect()


# A stateful device ---------------------------------------------------------------


class DeviceMachine(RuleBasedStateMachine):
    """connect / receive / ack (right, wrong, foreign) / drop / reconnect.

    Invariants: the app (drop rule seq <= last_seq) never sees a message
    twice, and the device's acked position (Device.acked_seq) never goes
    back.
    """

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.app = make_app()
        self.device, self.token = make_device(self.app)
        self.other, _other_token = make_device(self.app)
        self.socket = None
        self.last_seq = 0
        self.seen: list[str] = []
        self.unacked: list[Push] = []
        self.acked_seq = 0
        self.foreign: list[tuple[str, int]] = []

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, 10))

    @initialize()
    def connect_first(self):
        self.connect()

    @precondition(lambda self: self.socket is None)
    @rule()
    def connect(self):
        async def go():
            socket = await open_socket(self.token)
            await socket.send_to(text_data=JSON.encode(Hello(last_seq=self.last_seq)))
            welcome = JSON.decode_server((await socket.receive_output(5))["text"])
            assert isinstance(welcome, Welcome)
            return socket

        self.socket = self.run(go())
        self.unacked = []

    @rule(n=st.integers(1, 3))
    def push(self, n):
        for i in range(n):
            pushes.push_to_devices(
                app=self.app, device_ids=[self.device.pk], title=f"p{i}"
            )
        message, _ = pushes.push_to_devices(
            app=self.app, device_ids=[self.other.pk], title="other"
        )
        self.foreign.append((str(message.pk), 1))

    @precondition(lambda self: self.socket is not None)
    @rule()
    def receive(self):
        async def go():
            got = []
            while not await self.socket.receive_nothing(0.2):
                message = await self.socket.receive_output(1)
                if message["type"] == "websocket.close":
                    return got, True
                got.append(JSON.decode_server(message["text"]))
            return got, False

        frames_in, closed = self.run(go())
        for frame in frames_in:
            if isinstance(frame, Push):
                if frame.seq > self.last_seq:  # the app's drop rule
                    self.seen.append(frame.id)
                    self.last_seq = frame.seq
                self.unacked.append(frame)
        if closed:
            self.drop()

    @precondition(lambda self: self.socket is not None and self.unacked)
    @rule(wrong=st.booleans())
    def ack(self, wrong):
        push = self.unacked.pop(0)
        frame = Ack(id=("0" * 8 if wrong else push.id), seq=push.seq)
        self.run(self.socket.send_to(text_data=JSON.encode(frame)))

    @precondition(lambda self: self.socket is not None and self.foreign)
    @rule()
    def ack_foreign(self):
        message_id, seq = self.foreign[-1]
        self.run(
            self.socket.send_to(text_data=JSON.encode(Ack(id=message_id, seq=seq)))
        )

    @precondition(lambda self: self.socket is not None)
    @rule()
    def drop(self):
        if self.socket is not None:
            self.run(self.socket.disconnect())
            self.socket = None

    @invariant()
    def no_app_visible_duplicate(self):
        assert len(self.seen) == len(set(self.seen))

    @invariant()
    def acked_position_never_goes_back(self):
        acked = Device.objects.get(pk=self.device.pk).acked_seq
        assert acked >= self.acked_seq
        self.acked_seq = acked

    @invariant()
    def foreign_deliveries_untouched(self):
        from devices.models import Delivery

        assert not Delivery.objects.filter(
            device=self.other, status="delivered"
        ).exists()

    def teardown(self):
        if self.socket is not None:
            self.run(self.socket.disconnect())
        from devices.delivery import node as node_module

        node = node_module._nodes.pop(self.loop, None)
        if node is not None:
            self.loop.run_until_complete(node.stop())
        self.loop.close()


@pytest.mark.django_db(transaction=True)
def test_stateful_device_never_sees_a_duplicate_and_never_goes_back():
    from hypothesis import settings as hsettings

    DeviceMachine.TestCase.settings = hsettings(
        max_examples=8, stateful_step_count=12, deadline=None
    )
    DeviceMachine.TestCase().runTest()


# Through a real Daphne ----------------------------------------------------------

CORPUS_TEXT = [
    "",
    "{",
    "[]",
    "null",
    '{"type":"hello","last_seq":-1}',
    '{"type":"hello","last_seq":9007199254740993}',
    '{"type":"hello","last_seq":true}',
    '{"type":"ack","id":"' + "x" * 65 + '","seq":1}',
    '{"type":"ack","id":"x","seq":1e400}',
    '{"type":"ping","t":NaN}',
    '{"type":"ping","t":"\\ud800"}',
    '{"type":"\\u0000"}',
    "[" * 2000 + "]" * 2000,
    '{"type":"opened","id":"00000000-0000-0000-0000-000000000000","seq":1}',
]
CORPUS_BYTES = [b"", b"\x00", b"\x02\xc1", b"\x01\x91" + b"\x91" * 1000, b"\xff" * 50]


@pytest.mark.e2e
async def test_real_daphne_survives_bad_frames_oversized_frames_and_bodies(tmp_path):
    import websockets

    from tests.e2e.servers import daphne_servers
    from tests.reliability.services import private_redis
    from tests.reliability.test_faults import rss_bytes

    app = await database_sync_to_async(make_app)()
    _device, token = await database_sync_to_async(make_device)(app)
    limit = 4096
    with (
        private_redis() as redis,
        daphne_servers(1, redis_url=redis.url, tmp_path=tmp_path) as servers,
    ):
        server = servers[0]
        url = server.ws_url
        protocols = ["kpns.json.v1", f"kpns.token.{token}"]

        async def expect_close(ws, codes):
            with pytest.raises(websockets.ConnectionClosed) as closed:
                for _ in range(100):
                    await asyncio.wait_for(ws.recv(), 5)
            received = closed.value.rcvd
            code = None if received is None else received.code
            assert code in codes, received

        # Bad frames: error frames, the socket stays open.
        async with websockets.connect(url, subprotocols=protocols) as ws:
            await ws.send(JSON.encode(Hello(last_seq=0)))
            assert isinstance(JSON.decode_server(await ws.recv()), Welcome)
            for data in CORPUS_TEXT + CORPUS_BYTES:
                await ws.send(data)
            await ws.send(JSON.encode(Ping(t=9)))
            answers = []
            while True:
                frame = JSON.decode_server(await asyncio.wait_for(ws.recv(), 5))
                answers.append(frame)
                if isinstance(frame, Pong):
                    break
            assert all(isinstance(f, Error) for f in answers[:-1])
            # Every frame is answered except the empty binary one, which
            # the ASGI layer hands over as "no data" (ignored).
            assert len(answers) >= len(CORPUS_TEXT + CORPUS_BYTES)
        rss_before = rss_bytes(server.process.pid)
        # limit + 1 in one frame: 1009.
        async with websockets.connect(url, subprotocols=protocols) as ws:
            await ws.send("x" * (limit + 1))
            # autobahn fails the connection by dropping it (failByDrop):
            # the client sees no close frame (1006), never a buffered frame.
            await expect_close(ws, {1009, None})
        # Fragmented: each fragment small, the message over the limit: 1009.
        async with websockets.connect(url, subprotocols=protocols) as ws:
            await ws.send(["y" * 1500, "y" * 1500, "y" * 1500])
            await expect_close(ws, {1009, None})

        # Many in parallel, each announcing a 1 MB frame: closed without
        # the server buffering them.
        async def one_big():
            async with websockets.connect(
                url, subprotocols=protocols, max_size=None
            ) as ws:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(b"z" * 2**20)
                await expect_close(ws, {1009, None})

        await asyncio.gather(*(one_big() for _ in range(30)))
        rss_growth = rss_bytes(server.process.pid) - rss_before
        assert rss_growth < 40 * 2**20, rss_growth
        # HTTP bodies over the limit: 413, before the body is read.
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
            response = await http.post(
                "/api/v1/devices/register",
                content=big,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 413
            assert response.headers["content-type"] == "application/problem+json"

            async def chunks():
                for _ in range(40):
                    yield b" " * 65536

            response = await http.post(
                "/api/v1/devices/register",
                content=chunks(),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 413
            ok = await http.post(
                "/api/v1/devices/register",
                json={"client_key": app.client_key, "platform": "web"},
            )
            assert ok.status_code == 201
        # Nothing unhandled reached the log.
        await asyncio.sleep(0.5)
        assert "Traceback" not in server.output(), server.output()[-3000:]
