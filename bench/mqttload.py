"""A minimal MQTT 3.1.1 client on uvloop: the Mosquitto anchor's devices
(bench/anchor.py) and its publisher, in the style of bench/loadclient.py.

Only what the anchor needs: CONNECT with clean_session=0 (a persistent
session: the broker queues QoS 1 messages while the device is away),
SUBSCRIBE at QoS 1 to the device's own topic and the broadcast topic, a
PUBACK for each PUBLISH, PINGREQ as keep-alive; and for the publisher,
PUBLISH at QoS 1 waiting for the broker's PUBACK.

As a process, it reads the load client's commands on stdin (connect,
report, close) and answers one JSON line each; every wait is bounded and
it exits when stdin closes.
"""

import argparse
import asyncio
import json
import struct
import sys
import time
from typing import Any

import uvloop

CONNECT_CONCURRENCY = 200
CONNECT_TIMEOUT = 30.0
KEEPALIVE_SECONDS = 60
PING_TICK_SECONDS = 0.05
BROADCAST_TOPIC = "kpns/all"

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP = 0x82, 0x90, 0xC0, 0xD0


def device_topic(index: int) -> str:
    return f"kpns/d/{index}"


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def packet(first: int, body: bytes) -> bytes:
    """A packet: fixed header, remaining length (1-4 bytes), body."""
    length, header = len(body), bytearray([first])
    while True:
        byte, length = length % 128, length // 128
        header.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(header) + body


def connect_packet(client_id: str, *, clean: bool) -> bytes:
    flags = 0x02 if clean else 0x00
    variable = _text("MQTT") + bytes([4, flags]) + struct.pack("!H", KEEPALIVE_SECONDS)
    return packet(CONNECT, variable + _text(client_id))


def subscribe_packet(packet_id: int, topics: list[str]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_text(t) + b"\x01" for t in topics)
    return packet(SUBSCRIBE, body)


def publish_packet(topic: str, packet_id: int, payload: bytes) -> bytes:
    return packet(PUBLISH | 0x02, _text(topic) + struct.pack("!H", packet_id) + payload)


class Session(asyncio.Protocol):
    """One MQTT connection: parses packets, answers PUBLISH with PUBACK."""

    def __init__(self, on_publish: Any = None) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[int] = loop.create_future()
        self.suback: asyncio.Future[bool] = loop.create_future()
        self.pubacks: dict[int, asyncio.Future[float]] = {}
        self.on_publish = on_publish
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for future in (self.connack, self.suback):
            if not future.done():
                future.set_exception(ConnectionError("closed"))
                future.exception()  # a publisher never waits for a SUBACK

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            parsed = self._next_packet()
            if parsed is None:
                return
            self._handle(*parsed)

    def _next_packet(self) -> tuple[int, bytes] | None:
        length, multiplier, index = 0, 1, 1
        while True:
            if index >= len(self.buffer):
                return None
            byte = self.buffer[index]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not byte & 0x80:
                break
        if len(self.buffer) < index + length:
            return None
        first = self.buffer[0]
        body = bytes(self.buffer[index : index + length])
        del self.buffer[: index + length]
        return first, body

    def _handle(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBLISH:
            (size,) = struct.unpack_from("!H", body)
            topic_end = 2 + size
            payload_at = topic_end
            if first & 0x06:  # QoS 1: a packet id to acknowledge
                packet_id = body[topic_end : topic_end + 2]
                payload_at += 2
                assert self.transport is not None
                self.transport.write(b"\x40\x02" + packet_id)
            if self.on_publish is not None:
                self.on_publish(body[payload_at:], bool(first & 0x08))
        elif kind == CONNACK and not self.connack.done():
            self.connack.set_result(body[1])
        elif kind == SUBACK and not self.suback.done():
            self.suback.set_result(all(b != 0x80 for b in body[2:]))
        elif kind == PUBACK:
            (packet_id,) = struct.unpack("!H", body)
            future = self.pubacks.pop(packet_id, None)
            if future is not None and not future.done():
                future.set_result(time.time())


async def open_session(
    host: str,
    port: int,
    client_id: str,
    *,
    clean: bool,
    topics: list[str],
    on_publish: Any = None,
    source: str | None = None,
) -> Session:
    """Connect, wait for CONNACK (and SUBACK when subscribing)."""
    loop = asyncio.get_running_loop()
    _transport, session = await loop.create_connection(
        lambda: Session(on_publish),
        host,
        port,
        local_addr=(source, 0) if source else None,
    )
    assert session.transport is not None
    session.transport.write(connect_packet(client_id, clean=clean))
    code = await asyncio.wait_for(session.connack, CONNECT_TIMEOUT)
    if code != 0:
        raise ConnectionError(f"CONNACK {code}")
    if topics:
        session.transport.write(subscribe_packet(1, topics))
        if not await asyncio.wait_for(session.suback, CONNECT_TIMEOUT):
            raise ConnectionError("subscription refused")
    return session


async def publish(
    session: Session, packet_id: int, topic: str, payload: bytes
) -> float:
    """Publish at QoS 1; returns when the broker's PUBACK arrived."""
    future = asyncio.get_running_loop().create_future()
    session.pubacks[packet_id] = future
    assert session.transport is not None
    session.transport.write(publish_packet(topic, packet_id, payload))
    return await asyncio.wait_for(future, CONNECT_TIMEOUT)


class Devices:
    """Subscribers `first`..`first + count - 1`, each with its own session."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.host, self.port = args.host, args.port
        self.first, self.count, self.source = args.first, args.count, args.source
        self.sessions: list[Session] = []
        self.times: dict[str, list[float]] = {}
        self.duplicates = 0

    def on_publish(self, payload: bytes, dup: bool) -> None:
        self.times.setdefault(payload.decode(), []).append(time.time())
        self.duplicates += dup

    async def connect_all(self) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        results = await asyncio.gather(
            *(self._connect(self.first + i, gate) for i in range(self.count))
        )
        return {
            "connected": sum(results),
            "failed": len(results) - sum(results),
            "seconds": round(time.monotonic() - started, 3),
        }

    async def _connect(self, index: int, gate: asyncio.Semaphore) -> int:
        async with gate:
            try:
                session = await open_session(
                    self.host,
                    self.port,
                    f"kpns-bench-{index}",
                    clean=False,
                    topics=[device_topic(index), BROADCAST_TOPIC],
                    on_publish=self.on_publish,
                    source=self.source,
                )
            except (OSError, TimeoutError, ConnectionError):
                return 0
        self.sessions.append(session)
        return 1

    def report(self) -> dict[str, Any]:
        report = {
            "times": self.times,
            "duplicates": self.duplicates,
            "disconnected": sum(s.closed for s in self.sessions),
            "sockets": len(self.sessions),
        }
        self.times, self.duplicates = {}, 0
        return report

    async def keepalive(self, together: bool) -> None:
        """A PINGREQ from each session every KEEPALIVE_SECONDS / 2 (well
        inside the keep-alive; 1.5x is the limit), each on its own timer as
        for bench/loadclient.py's devices: a share of them every
        PING_TICK_SECONDS, or all at once with `together`."""
        every = KEEPALIVE_SECONDS / 2
        shares = 1 if together else round(every / PING_TICK_SECONDS)
        share = 0
        while True:
            await asyncio.sleep(every / shares)
            for session in self.sessions[share::shares]:
                if session.transport is not None and not session.closed:
                    session.transport.write(bytes([PINGREQ, 0]))
            share = (share + 1) % shares

    def close(self) -> None:
        for session in self.sessions:
            if session.transport is not None:
                session.transport.write(b"\xe0\x00")  # DISCONNECT
                session.transport.close()


async def main(args: argparse.Namespace) -> None:
    devices = Devices(args)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    keepalive = asyncio.ensure_future(devices.keepalive(args.sync_pings))
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "close":
            devices.close()
            _answer({"closed": True})
            break
        if line == "connect":
            _answer(await devices.connect_all())
        elif line == "report":
            _answer(devices.report())
    keepalive.cancel()


def _answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.1")
    parser.add_argument(
        "--sync-pings", action="store_true", help="every session pings at once"
    )
    uvloop.run(main(parser.parse_args()))
