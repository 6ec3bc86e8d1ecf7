"""Handshakes, hellos and goodbyes gathered for a few milliseconds, written
(or read) together.

A reconnect storm (a server restart, a network blip) brings thousands of
handshakes and hellos at once, and a blip as many disconnects; one database
round trip per socket made the storm wait on round trips. The batchers
trade at most WINDOW_SECONDS of latency for one query or transaction per
batch (registry.device_ids_authenticate, resume.devices_connect,
resume.devices_disconnect).
"""

import asyncio
import logging
from collections.abc import Callable
from uuid import UUID

from devices.delivery import resume
from devices.delivery.dbthreads import db_parallel
from devices.registry import services as registry

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 0.005
MAX_BATCH = 200


class _Window:
    """Calls `flush` WINDOW_SECONDS after the first item of a batch, or at
    once when the batch reaches MAX_BATCH (both batchers' one timer)."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._timer: asyncio.TimerHandle | None = None

    def added(self, size: int) -> None:
        if size >= MAX_BATCH:
            self.fire()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                WINDOW_SECONDS, self.fire
            )

    def fire(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()


class TokenBatcher:
    """Device tokens of handshakes checked many at a time, in one query."""

    def __init__(self) -> None:
        self._pending: dict[str, list[asyncio.Future[UUID | None]]] = {}
        self._window = _Window(self._flush)

    async def authenticate(self, token: str) -> UUID | None:
        """The id of the token's device, or None for a bad or expired token."""
        future: asyncio.Future[UUID | None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(token, []).append(future)
        self._window.added(len(self._pending))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        if batch:
            asyncio.ensure_future(self._run(batch))

    async def _run(self, batch: dict[str, list[asyncio.Future[UUID | None]]]) -> None:
        try:
            found = await db_parallel(registry.device_ids_authenticate)(
                tokens=list(batch)
            )
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for token, futures in batch.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(token))


class ConnectBatcher:
    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self._pending: dict[
            UUID, tuple[resume.ConnectRequest, asyncio.Future[resume.ConnectResult]]
        ] = {}
        self._window = _Window(self._flush)

    async def connect(self, request: resume.ConnectRequest) -> resume.ConnectResult:
        loop = asyncio.get_running_loop()
        if request.device_id in self._pending:
            self._window.fire()  # the same device twice: keep them in order
        future: asyncio.Future[resume.ConnectResult] = loop.create_future()
        self._pending[request.device_id] = (request, future)
        self._window.added(len(self._pending))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        if batch:
            asyncio.ensure_future(self._run(batch))

    async def _run(
        self,
        batch: dict[
            UUID, tuple[resume.ConnectRequest, asyncio.Future[resume.ConnectResult]]
        ],
    ) -> None:
        try:
            results = await db_parallel(resume.devices_connect)(
                node=self.node_name, requests=[request for request, _ in batch.values()]
            )
        except Exception as exc:
            for _request, future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for device_id, (_request, future) in batch.items():
            if future.done():
                continue
            if device_id in results:
                future.set_result(results[device_id])
            else:
                future.set_exception(LookupError(f"device {device_id} is gone"))


class DisconnectBatcher:
    """Presence cleared for many closed sockets in one statement.

    A closing socket waits for its batch's write, at most `wait` seconds.
    Each socket holds a bare future and the batch one timer. With a Task,
    a shield and a timer per socket (asyncio.wait_for), all alive at once
    when every socket of a process closes together, the process kept that
    peak as free memory: 0.6-0.9 KB more per socket after every socket
    closed and reconnected (docs/benchmarks.md, "Idle memory after churn").
    """

    def __init__(self) -> None:
        self._pending: list[tuple[UUID, str]] = []
        self._badly: list[UUID] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._window = _Window(self._flush)

    def disconnect(
        self,
        device_id: UUID,
        connection_id: str,
        wait: float,
        closed_badly: bool = False,
    ) -> asyncio.Future[None]:
        """Clear the device's presence ("" as connection_id: it had none,
        its socket never said hello); closed_badly: the server closed it
        4429 or 4400 (resume.devices_disconnect). The future is done once
        the write is done (or raised its error), or after `wait` seconds
        while the write goes on."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if not self._waiters:
            loop.call_later(wait, _release, self._waiters, None)
        self._pending.append((device_id, connection_id))
        if closed_badly:
            self._badly.append(device_id)
        self._waiters.append(waiter)
        self._window.added(len(self._pending))
        return waiter

    def _flush(self) -> None:
        pairs, self._pending = self._pending, []
        badly, self._badly = self._badly, []
        waiters, self._waiters = self._waiters, []
        if pairs:
            asyncio.ensure_future(self._run(pairs, badly, waiters))

    async def _run(
        self,
        pairs: list[tuple[UUID, str]],
        badly: list[UUID],
        waiters: list[asyncio.Future[None]],
    ) -> None:
        try:
            await db_parallel(resume.devices_disconnect)(
                pairs=pairs, closed_badly=badly
            )
        except Exception as exc:
            # Said here once: the sockets' own waits may have ended already
            # (node.DETACH_WAIT_SECONDS). Presence is corrected by the next
            # connect or the dead-node cleanup.
            logger.warning("presence not cleared for %d devices: %s", len(pairs), exc)
            _release(waiters, exc)
            return
        _release(waiters, None)


def _release(waiters: list[asyncio.Future[None]], exc: Exception | None) -> None:
    """End the waits not ended yet (by the timer, the write or a cancel)."""
    for waiter in waiters:
        if waiter.done():
            continue
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)
            waiter.exception()  # retrieved: no "never retrieved" warning
