"""Devices that behave like the SDKs for tests: reconnect with jittered
backoff after any close (1012 on a drain, 1006 on a crash) and resume with
`hello {last_seq}`. What the app sees is recorded by seq: a push whose seq is
not above last_seq is acked again but not handed to the app twice."""

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from devices.delivery.protocol import Push
from tests.wsclient import DeviceClient


@dataclass
class Device:
    device_id: Any
    token: str
    url: Callable[[], str]
    ssl: Any = None
    last_seq: int = 0
    seen: list[tuple[int, str]] = field(default_factory=list)  # the app's view
    received_at: dict[str, float] = field(default_factory=dict)  # id -> monotonic
    wire: int = 0  # pushes received, replays included
    closes: list[int | None] = field(default_factory=list)
    connects: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    last_close_at: float = 0.0
    last_welcome_at: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            client = DeviceClient(self.url(), self.token, ssl=self.ssl)
            try:
                await client.connect(last_seq=self.last_seq)
                self.connects += 1
                self.last_welcome_at = time.monotonic()
                self.connected.set()
                attempt = 0
                await self._receive(client, stop)
            except ConnectionClosed as closed:
                rcvd = getattr(closed, "rcvd", None)
                self.closes.append(rcvd.code if rcvd is not None else None)
                self.last_close_at = time.monotonic()
            except (OSError, TimeoutError, InvalidHandshake, AssertionError):
                pass
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)
            if stop.is_set():
                return
            # Full jitter, as the SDKs (docs/clients.md), on a test scale.
            await asyncio.sleep(random.uniform(0, min(1.0, 0.1 * 2**attempt)))
            attempt += 1

    async def _receive(self, client: DeviceClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                frame = await client.receive(timeout=0.5)
            except TimeoutError:
                continue
            if isinstance(frame, Push):
                self.wire += 1
                if frame.seq > self.last_seq:
                    self.seen.append((frame.seq, frame.id))
                    self.received_at[frame.id] = time.monotonic()
                    self.last_seq = frame.seq
                await client.ack(frame)


class Fleet:
    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> "Fleet":
        self.tasks = [asyncio.ensure_future(d.run(self.stop)) for d in self.devices]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait(self.tasks, timeout=10)
        for task in self.tasks:
            task.cancel()

    async def all_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(d.connected.is_set() for d in self.devices):
                return True
            await asyncio.sleep(0.05)
        return False

    def have(self, message_ids: set[str]) -> bool:
        return all(message_ids <= {mid for _, mid in d.seen} for d in self.devices)
