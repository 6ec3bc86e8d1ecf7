"""The one door to the channel layer: every KPNS event leaves through here.

An event for a node of this very process is handed to it directly.

Events go to node channels (one per server process), never to one channel
per device, so a campaign costs one layer message per node that holds a
target, whatever the number of devices (docs/architecture.md). The layer
is a wake-up service, not the record: what a send loses here the node's
sweep and the device's replay recover from the database.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from devices.delivery import layerloop, metrics
from devices.delivery.channelnames import node_channel
from devices.delivery.enqueue import Target

logger = logging.getLogger(__name__)

# Bounded so one huge event never stalls Redis or a node's receive loop.
TARGETS_PER_EVENT = 5000
SEND_TIMEOUT = 3.0


async def awake_targets(push: dict[str, Any], targets: Iterable[Target]) -> int:
    """Tell each node holding a target socket to write the push. Returns events sent."""
    by_node: dict[str, list[list[Any]]] = defaultdict(list)
    for target in targets:
        if target.node:
            by_node[target.node].append(
                [str(target.device_id), target.seq, target.delivery_id]
            )
    sends = [
        _asend(
            node,
            {
                "type": "node.deliver",
                "push": push,
                "targets": rows[start : start + TARGETS_PER_EVENT],
            },
        )
        for node, rows in by_node.items()
        for start in range(0, len(rows), TARGETS_PER_EVENT)
    ]
    # Concurrently: with Redis unreachable each send waits SEND_TIMEOUT, and
    # one after the other a push to K nodes held its caller K times as long.
    return sum(await asyncio.gather(*sends))


async def awake_batch(
    batch: Sequence[tuple[dict[str, Any], Iterable[Target]]],
) -> int:
    """Wake-ups for many messages (a push batch): one event per node per
    TARGETS_PER_EVENT targets, holding every message that node needs, in
    order. Returns events sent."""
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for push, targets in batch:
        rows: dict[str, list[list[Any]]] = defaultdict(list)
        for target in targets:
            if target.node:
                rows[target.node].append(
                    [str(target.device_id), target.seq, target.delivery_id]
                )
        for node, node_rows in rows.items():
            by_node[node].append({"push": push, "targets": node_rows})
    sends = []
    for node, entries in by_node.items():
        event: list[dict[str, Any]] = []
        size = 0
        for entry in entries:
            if event and size + len(entry["targets"]) > TARGETS_PER_EVENT:
                sends.append(
                    _asend(node, {"type": "node.deliver_batch", "pushes": event})
                )
                event, size = [], 0
            event.append(entry)
            size += len(entry["targets"])
        if event:
            sends.append(_asend(node, {"type": "node.deliver_batch", "pushes": event}))
    return sum(await asyncio.gather(*sends))


def wake_batch(batch: Sequence[tuple[dict[str, Any], Iterable[Target]]]) -> int:
    return _sync(awake_batch([(push, list(t)) for push, t in batch]))


def wake_batch_soon(batch: Sequence[tuple[dict[str, Any], Iterable[Target]]]) -> None:
    """wake_batch without waiting for Redis where the process has a layer
    loop of its own (an API process): the pushes are committed, so the
    request is answered at once and the send runs meanwhile. Elsewhere (a
    Daphne process, whose local nodes are handed events on its own loop)
    as wake_batch."""
    coroutine = awake_batch([(push, list(t)) for push, t in batch])
    if _own_loop:
        # Lost only if no slot frees within the timeout: then the sweep
        # delivers, as for a send that failed.
        if not layerloop.submit(coroutine, SEND_TIMEOUT * 2):
            logger.warning("wake-up not sent: the layer loop's sends are full")
        return
    _sync(coroutine)


async def aclose_devices(node: str, items: list[list[Any]], code: int) -> int:
    """Close sockets on a node: one event for [[device id, connection id or
    None], ...] (a connection id closes only that connection)."""
    event = {"type": "node.close", "devices": items, "code": code}
    return await _asend(node, event)


def wake_targets(push: dict[str, Any], targets: Iterable[Target]) -> int:
    return _sync(awake_targets(push, list(targets)))


def close_device(node: str, device_id: UUID, code: int = 4403) -> int:
    return _sync(aclose_devices(node, [[str(device_id), None]], code))


# Set by kpns_site/wsgi.py: this process serves HTTP only, holds no node,
# and runs its sends on one long-lived loop (devices/layerloop.py) instead
# of a new loop, and a new Redis connection, per async_to_sync call.
_own_loop = False


def send_on_own_loop() -> None:
    global _own_loop
    _own_loop = True


def _sync(coroutine: Coroutine[Any, Any, int]) -> int:
    if _own_loop:
        # Sends are bounded by SEND_TIMEOUT each and run concurrently.
        return layerloop.run(coroutine, SEND_TIMEOUT * 2)

    async def awaited() -> int:
        return await coroutine

    return async_to_sync(awaited)()


# Nodes of this process by name, each with its event loop: an event for
# one of them is handed over directly instead of through Redis.
_local: dict[str, tuple[asyncio.AbstractEventLoop, Callable[..., Any]]] = {}


def serve_locally(node: str, handle: Callable[[dict[str, Any]], Any]) -> None:
    _local[node] = (asyncio.get_running_loop(), handle)


def stop_serving_locally(node: str) -> None:
    _local.pop(node, None)


# Layer sends of one process in flight at once: below the Redis pool's
# max_connections (kpns_site/settings.py), so a burst waits here instead of
# failing with MaxConnectionsError and taking every other send down with it.
MAX_CONCURRENT_SENDS = 200
_send_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
# Nodes whose last send failed: one warning per node per outage, not one
# per event (a Sentinel failover logged ~190).
_failing: dict[str, int] = {}

_WHAT = {
    "node.deliver": "wake-up",
    "node.deliver_batch": "wake-up",
    "node.close": "close",
}


async def _asend(node: str, event: dict[str, Any]) -> int:
    local = _local.get(node)
    if local is not None and local[0] is asyncio.get_running_loop():
        # The target sockets are this process's: no Redis round trip, and no
        # wait behind the node's one-at-a-time layer receive while the same
        # event loop is busy serving the API (docs/benchmarks.md).
        try:
            await local[1](event)
        except Exception:
            # As a lost layer message: the delivery is committed, the
            # node's sweep or the device's next connect delivers it.
            logger.warning("local wake-up of node %s failed", node, exc_info=True)
            return 0
        return 1
    layer = get_channel_layer()
    if layer is None:
        return 0
    what = _WHAT.get(event["type"], event["type"])
    try:
        async with _slots():
            await asyncio.wait_for(layer.send(node_channel(node), event), SEND_TIMEOUT)
    except Exception as exc:
        # Redis down or the node's channel full. A wake-up's delivery is
        # committed: the node's sweep or the device's next connect delivers
        # it. A close's socket is closed by its device's idle timeout or by
        # the node's death.
        metrics.LAYER_ERRORS.labels("send").inc()
        failures = _failing.get(node, 0)
        _failing[node] = failures + 1
        if not failures:
            logger.warning(
                "channel layer: %s to node %s not sent (%s: %s); further "
                "failures to this node are counted, not logged",
                what,
                node,
                type(exc).__name__,
                exc,
            )
        return 0
    failed = _failing.pop(node, 0)
    if failed:
        logger.info(
            "channel layer: sends to node %s resumed after %d failed", node, failed
        )
    return 1


def _slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _send_slots.get(loop)
    if slots is None:
        for stale in [lp for lp in _send_slots if lp.is_closed()]:
            del _send_slots[stale]
        slots = _send_slots[loop] = asyncio.Semaphore(MAX_CONCURRENT_SENDS)
    return slots
