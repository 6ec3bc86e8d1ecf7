"""Hellos gathered for a few milliseconds and connected in one transaction.

A reconnect storm (a server restart, a network blip) brings thousands of
hellos at once; one database transaction per hello made the storm wait on
round trips. The batcher trades at most WINDOW_SECONDS of latency for one
transaction per batch (inbox.devices_connect).
"""

import asyncio
from uuid import UUID

from devices import inbox
from devices.dbpool import db_parallel

WINDOW_SECONDS = 0.005
MAX_BATCH = 200


class ConnectBatcher:
    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self._pending: dict[
            UUID, tuple[inbox.ConnectRequest, asyncio.Future[inbox.ConnectResult]]
        ] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def connect(self, request: inbox.ConnectRequest) -> inbox.ConnectResult:
        loop = asyncio.get_running_loop()
        if request.device_id in self._pending:
            self._flush()  # the same device twice: keep them in order
        future: asyncio.Future[inbox.ConnectResult] = loop.create_future()
        self._pending[request.device_id] = (request, future)
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(WINDOW_SECONDS, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, {}
        if batch:
            asyncio.ensure_future(self._run(batch))

    async def _run(
        self,
        batch: dict[
            UUID, tuple[inbox.ConnectRequest, asyncio.Future[inbox.ConnectResult]]
        ],
    ) -> None:
        try:
            results = await db_parallel(inbox.devices_connect)(
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
