"""The node: this server process's share of the socket path.

One node per process (per event loop). It receives on one channel-layer
channel for all of its sockets, writes each push to local sessions with a
frame built once per message, batches receipts into the database, keeps its
presence heartbeat, and sweeps the database for wake-ups the layer lost.
Design and numbers: docs/architecture.md.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery import (
    dbthreads,
    metrics,
    noderow,
    rebalance,
    receipts,
    wakeups,
)
from devices.delivery.channelnames import new_node_name, node_channel
from devices.delivery.connects import ConnectBatcher, DisconnectBatcher, TokenBatcher
from devices.delivery.dbthreads import db_heartbeat
from devices.delivery.drain import node_drain
from devices.delivery.protocol import JSON, KMPP
from devices.delivery.receiptwriter import ReceiptWriter
from devices.delivery.session import Render, Session, template_renderer
from devices.delivery.sweep import Sweeper

logger = logging.getLogger(__name__)

CLOSE_REPLACED = 4409
CLOSE_REVOKED = 4403
CLOSE_IDLE = 4408
# Drain (docs/operations.md): the standard "service restart"; SDKs reconnect
# with jittered backoff, elsewhere (this process no longer listens).
CLOSE_SERVICE_RESTART = 1012
# The layer's BLPOP waits up to 5 s; a receive that hangs past this is dead.
LAYER_RECEIVE_TIMEOUT = 30.0
DB_TIMEOUT = 10.0
# How long a closing consumer waits for its presence write (see detach).
DETACH_WAIT_SECONDS = 2.0
WATCHDOG_SECONDS = 2.0
STOP_TIMEOUT = 2.0
METRICS_SECONDS = 1.0
# Closes for sockets replaced on another node are gathered this long and
# sent as one event per node: after a process dies, its devices reconnect
# to the others at once, and one send per device exhausted the Redis pool
# (501 MaxConnectionsError in 1.3 s at 1,000 devices).
CLOSE_BATCH_SECONDS = 0.01
CLOSES_PER_EVENT = 5000


class Node:
    def __init__(self) -> None:
        self.name = new_node_name()
        self.channel = node_channel(self.name)
        self.sessions: dict[UUID, Session] = {}
        # Every accepted socket of this process, hello said or not.
        self.sockets: set[Any] = set()
        # Sockets watched and unwatched so far (devices.server.memtrim).
        self.socket_changes = 0
        self.receipts = receipts.Receipts()
        self.receipt_writer = ReceiptWriter(self)
        self.sweeper = Sweeper(self)
        self._closes: dict[str, list[list[Any]]] = {}
        self._close_timer: asyncio.TimerHandle | None = None
        self.tokens = TokenBatcher()
        self.connects = ConnectBatcher(self.name)
        self.disconnects = DisconnectBatcher()
        self.rebalancer = rebalance.Rebalancer(self)
        self.rebalanced = 0  # sockets shed to other processes (metrics)
        self.draining = False
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()
        self._starting = False
        # Since when our own heartbeats succeed (None while they fail): we
        # judge other nodes dead only after NODE_DEAD_AFTER_SECONDS of our
        # own health, so a database outage does not make every node declare
        # every other one dead when it comes back.
        self._healthy_since: float | None = None

    async def ensure_started(self) -> None:
        if self._started.is_set():
            return
        if self._starting:
            await self._started.wait()
            return
        self._starting = True
        try:
            await database_sync_to_async(self._register_row)()
        except Exception as exc:
            # The loops must run anyway: the heartbeat registers the row
            # once the database answers.
            logger.warning("node row not registered yet: %s", exc)
        finally:
            self._started.set()
        wakeups.serve_locally(self.name, self.handle_event)
        for loop in (
            self._receive_loop,
            self.receipt_writer.run,
            self._heartbeat_loop,
            self._watchdog_loop,
            self.sweeper.run,
            self._metrics_loop,
            self.rebalancer.run,
        ):
            self._tasks.append(asyncio.ensure_future(self._guard(loop)))

    async def stop(self) -> None:
        wakeups.stop_serving_locally(self.name)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # A channels-redis receive may finish its blocking pop before it
            # honours the cancel; do not let that hold a shutdown.
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        self._tasks.clear()
        await self.flush_receipts(final=True)
        await dbthreads.settle(STOP_TIMEOUT)
        metrics.publish(self.name, 0)

    async def drain(self, seconds: float) -> dict[str, Any]:
        """Hand every device to the other processes, then leave (SIGTERM)."""
        return await node_drain(self, seconds)

    async def flush_receipts(self, final: bool = False) -> None:
        await self.receipt_writer.flush(final)

    # Sockets --------------------------------------------------------------

    def watch(self, consumer: Any) -> None:
        self.sockets.add(consumer)
        self.socket_changes += 1

    def unwatch(self, consumer: Any) -> None:
        self.sockets.discard(consumer)
        self.socket_changes += 1

    async def _watchdog_loop(self) -> None:
        """Close sockets that never said hello or went silent (consumer.overdue)."""
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            now = time.monotonic()
            hello_before = now - kpns_setting("HELLO_TIMEOUT_SECONDS")
            silent_before = now - kpns_setting("IDLE_TIMEOUT_SECONDS")
            for consumer in list(self.sockets):
                code = consumer.overdue(hello_before, silent_before)
                if code is not None:
                    self.sockets.discard(consumer)
                    await consumer.close(code)

    # Sessions -------------------------------------------------------------

    def attach(self, session: Session) -> Session | None:
        """Make a session the live one for its device; returns the one replaced."""
        previous = self.sessions.get(session.device_id)
        self.sessions[session.device_id] = session
        return previous if previous is not session else None

    async def detach(
        self,
        session: Session | None,
        device_id: UUID,
        closed_badly: bool = False,
    ) -> None:
        """Forget a closed socket's session (None: it never said hello) and
        clear the device's presence; closed_badly: closed 4429 or 4400."""
        connection_id = ""
        if session is not None:
            session.stop()
            connection_id = session.connection_id
            if self.sessions.get(device_id) is session:
                del self.sessions[device_id]
        if not (connection_id or closed_badly):
            return
        if self.draining:
            # The drain's end clears this node's presence in one statement
            # (_forget): one write per socket made a 500-socket drain take
            # 6 s, and a full process could not drain in its bound.
            return
        try:
            # The write goes on in its batch past this wait; the consumer
            # must finish first. Waiting as long as Daphne's 10 s
            # application_close_timeout, consumers of a mass disconnect on
            # a busy database were killed, and Daphne's warning for each
            # (with the task's repr) took 47% of a server's samples in a
            # reconnect storm (docs/benchmarks.md).
            await self.disconnects.disconnect(
                device_id, connection_id, DETACH_WAIT_SECONDS, closed_badly
            )
        except Exception:
            # The dead-node cleanup or the next connect corrects presence.
            logger.warning("presence not cleared for %s", device_id)

    def replaced(
        self, session: Session, previous_node: str | None, previous_conn: str | None
    ) -> None:
        """Close the older socket of a device that connected again."""
        if previous_node and previous_node != self.name and previous_conn:
            pending = self._closes.setdefault(previous_node, [])
            pending.append([str(session.device_id), previous_conn])
            if self._close_timer is None:
                loop = asyncio.get_running_loop()
                self._close_timer = loop.call_later(
                    CLOSE_BATCH_SECONDS, self._send_closes
                )

    def _send_closes(self) -> None:
        self._close_timer = None
        closes, self._closes = self._closes, {}
        for node_name, items in closes.items():
            for start in range(0, len(items), CLOSES_PER_EVENT):
                asyncio.ensure_future(
                    wakeups.aclose_devices(
                        node_name,
                        items[start : start + CLOSES_PER_EVENT],
                        CLOSE_REPLACED,
                    )
                )

    # Events from the channel layer ------------------------------------------

    async def node_deliver(self, event: dict[str, Any]) -> None:
        await self._deliver(event["push"], event["targets"])

    async def node_deliver_batch(self, event: dict[str, Any]) -> None:
        # Several messages (a push batch), in seq order per device.
        for entry in event["pushes"]:
            await self._deliver(entry["push"], entry["targets"])

    async def _deliver(self, push: dict[str, Any], targets: list[list[Any]]) -> None:
        if push["expires_at"] <= _now_ms():
            return
        renderers: dict[str, Render] = {}
        message_id = push["id"]
        written = 0
        for device_id, seq, delivery_id in targets:
            session = self.sessions.get(UUID(device_id))
            if session is None:
                continue
            codec = session.codec
            render = renderers.get(codec.name)
            if render is None:
                render = renderers[codec.name] = template_renderer(codec, push)
            before = session.cursor
            await session.offer(seq, delivery_id, message_id, render)
            if before < seq <= session.cursor:
                written += 1
        if written:
            # One latency for the whole event: its writes are milliseconds apart.
            latency = max(0.0, (_now_ms() - push["sent_at"]) / 1000)
            metrics.stats.observe_latency(latency, written)

    async def node_close(self, event: dict[str, Any]) -> None:
        # "devices": [[device id, connection id or None], ...]; events of
        # nodes before batching name one "device_id".
        items = event.get("devices") or [
            [event["device_id"], event.get("connection_id")]
        ]
        for device_id, wanted in items:
            session = self.sessions.get(UUID(device_id))
            if session and (wanted is None or wanted == session.connection_id):
                await session.close(event["code"])

    # Receipts -------------------------------------------------------------

    # Loops ----------------------------------------------------------------

    async def _receive_loop(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            await asyncio.Event().wait()
            return
        while True:
            try:
                event = await asyncio.wait_for(
                    layer.receive(self.channel), LAYER_RECEIVE_TIMEOUT
                )
            except TimeoutError:
                # Quiet is normal; the bound only stops a receive that hangs
                # on a dead connection from waiting forever.
                continue
            await self.handle_event(event)

    async def handle_event(self, event: dict[str, Any]) -> None:
        """One node event, from the layer or from this process (delivery)."""
        handler = getattr(self, event.get("type", "").replace(".", "_"), None)
        if handler is None or not event["type"].startswith("node."):
            logger.warning("unknown node event %r", event.get("type"))
            return
        await handler(event)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(kpns_setting("NODE_HEARTBEAT_SECONDS"))
            healthy = self._healthy_since
            judge = healthy is not None and (
                time.monotonic() - healthy >= kpns_setting("NODE_DEAD_AFTER_SECONDS")
            )
            live = [(s.device_id, s.connection_id) for s in self.sessions.values()]
            try:
                revoked, excess = await asyncio.wait_for(
                    db_heartbeat(self._heartbeat)(judge, live), DB_TIMEOUT
                )
            except BaseException:
                self._healthy_since = None
                raise
            if self._healthy_since is None:
                self._healthy_since = time.monotonic()
            for device_id in revoked:
                session = self.sessions.get(device_id)
                if session:
                    await session.close(CLOSE_REVOKED)
            self.rebalancer.plan(excess, kpns_setting("NODE_HEARTBEAT_SECONDS"))

    async def _metrics_loop(self) -> None:
        while True:
            await asyncio.sleep(METRICS_SECONDS)
            metrics.publish(self.name, len(self.sessions))
            if self.rebalanced:
                metrics.REBALANCED.inc(self.rebalanced)
                self.rebalanced = 0
            sweeper = self.sweeper
            if sweeper.finished is not None:
                lag = time.monotonic() - sweeper.finished
                metrics.observe_sweep(self.name, sweeper.seconds, lag)

    async def _guard(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Keep a background loop alive across Redis or database outages."""
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("node loop %s failed: %s", loop.__name__, exc)
                if loop.__name__ == "_receive_loop":
                    metrics.stats.layer_receive_errors += 1
                if time.monotonic() - started > 60:
                    delay = 0.5  # a new outage, not the same one going on
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # Database helpers (run in a worker thread) ------------------------------

    # The node's row (devices.delivery.noderow), on the heartbeat thread.

    def _register_row(self) -> None:
        noderow.node_register(name=self.name, channel=self.channel)

    def _heartbeat(
        self, judge_dead: bool = True, live: list[tuple[UUID, str]] | None = None
    ) -> tuple[list[UUID], int]:
        return noderow.node_heartbeat(
            name=self.name,
            channel=self.channel,
            held=len(self.sessions),
            draining=self.draining,
            judge_dead=judge_dead,
            live=live or [],
        )


def _now_ms() -> int:
    return int(timezone.now().timestamp() * 1000)


_nodes: dict[asyncio.AbstractEventLoop, Node] = {}


def get_node() -> Node:
    """The node of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    node = _nodes.get(loop)
    if node is None:
        for stale in [lp for lp in _nodes if lp.is_closed()]:
            del _nodes[stale]
        node = _nodes[loop] = Node()
    return node


__all__ = ["Node", "get_node", "JSON", "KMPP"]
