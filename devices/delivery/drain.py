"""A node's drain (SIGTERM): every device handed to the other processes.

New hellos are refused from now on; hellos being connected finish; every
socket is closed with 1012 (service restart) so its device reconnects
elsewhere and resumes from its last_seq; acks that arrive meanwhile are
written; what is left after `seconds` is marked offline, and the node row
is deleted. The caller has stopped accepting connections first
(devices.server.serve, docs/operations.md "Drains at full size").
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async

from devices.delivery import metrics, noderow

if TYPE_CHECKING:
    from devices.delivery.node import Node

logger = logging.getLogger(__name__)

DB_TIMEOUT = 10.0
CLOSE_SERVICE_RESTART = 1012
# A drain writes this many close frames, then lets the loop serve others.
CLOSES_BETWEEN_YIELDS = 500
# How long hellos already being connected may take to commit before the
# sockets are told to go (so no connect of ours lands after the device's
# reconnect elsewhere).
DRAIN_SETTLE_SECONDS = 2.0


async def node_drain(node: "Node", seconds: float) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + seconds
    node.draining = True
    sockets = len(node.sockets)
    try:
        await asyncio.wait_for(
            database_sync_to_async(noderow.node_mark_draining)(name=node.name),
            DB_TIMEOUT,
        )
    except Exception as exc:
        logger.warning("node row not marked draining: %s", exc)
    await wait_until(
        lambda: all(s.synced or s.closed for s in node.sessions.values()),
        min(deadline, time.monotonic() + DRAIN_SETTLE_SECONDS),
    )
    for index, consumer in enumerate(list(node.sockets)):
        try:
            await consumer.close(CLOSE_SERVICE_RESTART)
        except Exception as exc:
            logger.warning("socket not closed for drain: %s", exc)
        if index % CLOSES_BETWEEN_YIELDS == CLOSES_BETWEEN_YIELDS - 1:
            await asyncio.sleep(0)  # let acks and receipts through
    # Each socket's disconnect forgets its session (presence is cleared for
    # the whole node below); acks received before it are flushed by the
    # receipt loop, which keeps running until stop().
    await wait_until(lambda: not (node.sockets or node.sessions), deadline)
    left = len(node.sessions)
    await node.stop()
    try:
        await asyncio.wait_for(
            database_sync_to_async(noderow.node_forget)(name=node.name), DB_TIMEOUT
        )
    except Exception as exc:
        logger.warning("node %s not removed: %s", node.name, exc)
    metrics.DRAINS.inc()
    report = {
        "node": node.name,
        "sockets": sockets,
        "left_open": left,
        "seconds": round(time.monotonic() - started, 3),
    }
    logger.info("node drained", extra={"event": "drain", **report})
    return report


async def wait_until(
    done: Callable[[], bool], deadline: float, interval: float = 0.02
) -> bool:
    """Poll `done` until it holds or the monotonic deadline passes."""
    while time.monotonic() < deadline:
        if done():
            return True
        await asyncio.sleep(interval)
    return done()
