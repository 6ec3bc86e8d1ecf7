"""A simulated device for fault and soak tests: reconnects, resumes, logs.

It behaves as docs/protocol.md asks an SDK to: ``hello {last_seq}`` with the
highest seq the app processed, the drop rule ``seq <= last_seq``, an ack for
every push (duplicates too, so the server can mark them), an app-level ping
every ``heartbeat`` seconds, and on a lost socket a reconnect to one of the
server URLs after an exponential backoff with jitter. Close codes 4403
(revoked) and 4409 (replaced) stop it; everything else (1006, 4503, 4408,
4429, ...) reconnects. Everything it receives goes to a ``DeviceLog`` for the
receipt checker (tests/receipts.py).
"""

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from typing import Any

import websockets

from devices.delivery.protocol import (
    JSON,
    Ack,
    Codec,
    Error,
    Hello,
    Ping,
    Push,
    Resync,
    Welcome,
)
from tests.receipts import DeviceLog

STOP_CODES = {4403, 4409}


class SimDevice:
    def __init__(
        self,
        urls: Sequence[str],
        token: str,
        device_id: Any,
        *,
        codec: Codec = JSON,
        ack: bool = True,
        read_delay: float = 0.0,
        stall: float = 0.0,
        backoff: tuple[float, float] = (0.1, 2.0),
        rng: random.Random | None = None,
    ) -> None:
        self.urls = list(urls)
        self.token = token
        self.codec = codec
        self.ack = ack
        self.read_delay = read_delay
        # Stop reading the socket this long after the first push (once):
        # a phone whose app froze, then came back.
        self.stall = stall
        self.backoff = backoff
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.log = DeviceLog(str(device_id))
        self.online = asyncio.Event()
        self.errors: list[str] = []
        self.welcomes = 0
        self.welcomed_at: list[float] = []  # time.monotonic() of each welcome
        self.connect_failures = 0
        self.stopped = False
        self.ws: Any = None
        self.url: str | None = None
        self._task: asyncio.Task[None] | None = None

    # Control --------------------------------------------------------------

    def start(self) -> "SimDevice":
        self._task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        self.stopped = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def drop(self) -> None:
        """Cut the current socket without a close handshake (churn)."""
        ws = self.ws
        if ws is not None and ws.transport is not None:
            ws.transport.abort()

    # The loop -------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self.stopped:
            code = await self._one_connection()
            self.online.clear()
            self.log.closes.append(code)
            self.log.new_connection()
            if code in STOP_CODES or self.stopped:
                return
            if self.welcomes:
                attempt = 0 if code is not None and code != 1006 else attempt
            attempt += 1
            low, high = self.backoff
            delay = min(high, low * 2 ** min(attempt, 10))
            await asyncio.sleep(delay * self.rng.uniform(0.5, 1.0))

    async def _one_connection(self) -> int | None:
        self.url = self.rng.choice(self.urls)
        pinger: asyncio.Task[None] | None = None
        try:
            async with websockets.connect(
                self.url,
                subprotocols=[self.codec.name, f"kpns.token.{self.token}"],
                open_timeout=5,
                close_timeout=1,
                max_queue=4,
            ) as ws:
                self.ws = ws
                await ws.send(self.codec.encode(Hello(last_seq=self.log.last_seq)))
                async for data in ws:
                    frame = self.codec.decode_server(data)
                    if isinstance(frame, Push):
                        self.log.record(frame.id, frame.seq)
                        if self.ack:
                            await ws.send(
                                self.codec.encode(Ack(id=frame.id, seq=frame.seq))
                            )
                        if self.read_delay:
                            await asyncio.sleep(self.read_delay)
                        if self.stall:
                            stall, self.stall = self.stall, 0.0
                            await asyncio.sleep(stall)
                    elif isinstance(frame, Welcome):
                        self.welcomes += 1
                        self.welcomed_at.append(time.monotonic())
                        self.online.set()
                        pinger = asyncio.ensure_future(self._ping(ws, frame.heartbeat))
                    elif isinstance(frame, Resync):
                        self.log.resyncs.append(frame.last_seq)
                    elif isinstance(frame, Error):
                        self.errors.append(frame.code)
            return ws.close_code
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else 1006
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            self.connect_failures += 1
            return None
        finally:
            self.ws = None
            if pinger is not None:
                pinger.cancel()

    async def _ping(self, ws: Any, heartbeat: int) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(max(0.2, heartbeat))
                await ws.send(self.codec.encode(Ping(t=int(time.time() * 1000))))


async def start_fleet(
    urls: Sequence[str],
    devices: Sequence[tuple[Any, str]],
    *,
    timeout: float = 60.0,
    seed: int = 7,
    **options: Any,
) -> list[SimDevice]:
    """Start one SimDevice per (device_id, token) and wait until all are online."""
    rng = random.Random(seed)  # noqa: S311
    fleet = []
    for index, (device_id, token) in enumerate(devices):
        sim = SimDevice(
            urls,
            token,
            device_id,
            rng=random.Random(rng.random()),
            **options,  # noqa: S311
        )
        fleet.append(sim.start())
        if index % 50 == 49:
            await asyncio.sleep(0.02)  # a connect storm, not a SYN flood
    await wait_online(fleet, timeout)
    return fleet


async def wait_online(fleet: Sequence[SimDevice], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for sim in fleet:
        left = deadline - time.monotonic()
        await asyncio.wait_for(sim.online.wait(), max(0.01, left))


async def stop_fleet(fleet: Sequence[SimDevice]) -> None:
    await asyncio.gather(*(sim.stop() for sim in fleet), return_exceptions=True)
