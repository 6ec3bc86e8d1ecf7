"""Catch-ups gathered for a few milliseconds and read in one query.

A session catches up from the database when a wake-up went missing (a gap
in seqs, or a pending row found by the node's sweep). When thousands of
sessions need it at once — a broadcast whose wake-ups lag behind the sweep,
a Redis restart — one query per session took 53% of a server's samples and
stretched a 10,000-device broadcast's tail to 26 s (docs/benchmarks.md).
Here they share one query per batch.
"""

import asyncio
import weakref
from collections import defaultdict
from typing import Any
from uuid import UUID

from django.utils import timezone

from devices.delivery.dbthreads import db_parallel
from devices.delivery.messages import push_fields
from devices.models import OPEN_STATUSES, Delivery, Message

WINDOW_SECONDS = 0.01
MAX_BATCH = 1000

Rows = list[tuple[int, int, dict[str, Any]]]
Request = tuple[UUID, int, int]  # device id, after seq, limit


def open_deliveries_many(requests: list[Request]) -> dict[UUID, Rows]:
    """For each (device, after_seq, limit): its open, unexpired deliveries
    above after_seq, in seq order, at most limit of them."""
    wanted = {device_id: (after, limit) for device_id, after, limit in requests}
    floor = min(after for after, _limit in wanted.values())
    rows = (
        Delivery.objects.filter(
            device_id__in=list(wanted),
            status__in=OPEN_STATUSES,
            seq__gt=floor,
            expires_at__gt=timezone.now(),
        )
        .order_by("device_id", "seq")
        .values_list("device_id", "seq", "pk", "message_id")
    )
    picked: dict[UUID, list[tuple[int, int, Any]]] = defaultdict(list)
    for device_id, seq, pk, message_id in rows:
        after, limit = wanted[device_id]
        if seq > after and len(picked[device_id]) < limit:
            picked[device_id].append((seq, pk, message_id))
    message_ids = {m for chosen in picked.values() for _s, _p, m in chosen}
    fields = {
        pk: push_fields(message)
        for pk, message in Message.objects.in_bulk(message_ids).items()
    }
    return {
        device_id: [(seq, pk, fields[m]) for seq, pk, m in picked.get(device_id, [])]
        for device_id in wanted
    }


class CatchUpBatcher:
    def __init__(self) -> None:
        self._pending: list[tuple[Request, asyncio.Future[Rows]]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def fetch(self, device_id: UUID, after_seq: int, limit: int) -> Rows:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Rows] = loop.create_future()
        self._pending.append(((device_id, after_seq, limit), future))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(WINDOW_SECONDS, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        # One request per device per query: a later one waits for the next.
        seen: set[UUID] = set()
        now: list[Any] = []
        later: list[Any] = []
        for item in batch:
            (later if item[0][0] in seen else now).append(item)
            seen.add(item[0][0])
        self._pending = later
        if later and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                WINDOW_SECONDS, self._flush
            )
        if now:
            asyncio.ensure_future(self._run(now))

    async def _run(self, batch: list[tuple[Request, asyncio.Future[Rows]]]) -> None:
        try:
            found = await db_parallel(open_deliveries_many)([r for r, _f in batch])
        except Exception as exc:
            for _request, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (device_id, _after, _limit), future in batch:
            if not future.done():
                future.set_result(found[device_id])


_batchers: "weakref.WeakKeyDictionary[Any, CatchUpBatcher]" = (
    weakref.WeakKeyDictionary()
)


def catch_up_batcher(node: Any) -> CatchUpBatcher:
    """The batcher of a node (one per server process)."""
    batcher = _batchers.get(node)
    if batcher is None:
        batcher = _batchers[node] = CatchUpBatcher()
    return batcher
