"""One device's live session: ordering, replay and in-flight messages.

A session writes a device's pushes in strictly increasing ``seq`` order over
its socket. ``cursor`` is the highest seq that needs nothing more from this
socket (written, or known to need no writing). A wake-up for ``cursor + 1``
is written at once; a wake-up further ahead means one was lost, so the
session catches up from the database instead of guessing. The design:
docs/architecture.md.
"""

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from devices.conf import kpns_setting
from devices.delivery import resume
from devices.delivery.catchup import catch_up_batcher
from devices.delivery.protocol import (
    Ack,
    AckUpto,
    Codec,
    Opened,
    PushTemplate,
    Resync,
    Welcome,
    inbox_frame,
)

if TYPE_CHECKING:
    from devices.delivery.node import Node

logger = logging.getLogger(__name__)

# Acks of messages older than this many in-flight ones go the slow path
# (looked up by seq in the database) instead of growing memory.
MAX_INFLIGHT = 2000
REPLAY_BATCH = 1000
# A live socket more than MAX_UNACKED pushes behind is closed with this code
# (docs/protocol.md): it resumes from the database when it reconnects.
CLOSE_TOO_SLOW = 4429

SendFrame = Callable[[str | bytes], Awaitable[None]]
Render = Callable[[int], str | bytes]


class Session:
    def __init__(
        self,
        *,
        device_id: UUID,
        codec: Codec,
        node: "Node",
        send_frame: SendFrame,
        close: Callable[[int], Awaitable[None]],
    ) -> None:
        self.device_id = device_id
        self.codec = codec
        self.node = node
        self.send_frame = send_frame
        self.close = close
        self.connection_id = secrets.token_hex(8)
        self.cursor = 0
        self.synced = False
        self.closed = False
        # seq -> (delivery id, message id) of pushes written but not acked.
        self.inflight: OrderedDict[int, tuple[int, str]] = OrderedDict()
        self._waiting: list[tuple[int, int, str, Render]] = []
        self._catch_up: asyncio.Task[None] | None = None
        # Flow control: at most `window` pushes written and not acked. While
        # `_backlog` is set the database holds open deliveries above the
        # cursor that the window did not allow to write yet; acks resume.
        self.window = max(1, min(kpns_setting("MAX_UNACKED"), MAX_INFLIGHT))
        self._backlog = False
        # `opened` frames this socket may still send free of the inbound
        # rate limit: one per push written (carries_receipt).
        self._opens_owed = 0

    async def start(self, *, last_seq: int, heartbeat: int, max_frame: int) -> None:
        """Go online here, then replay what the device missed."""
        result = await self.node.connects.connect(
            resume.ConnectRequest(self.device_id, self.connection_id, last_seq)
        )
        self.node.replaced(self, result.previous_node, result.previous_connection)
        resume_at = max(0, min(last_seq, result.db_last_seq))
        await self.send_frame(
            self.codec.encode(
                Welcome(
                    device_id=str(self.device_id),
                    last_seq=result.db_last_seq,
                    heartbeat=heartbeat,
                    max_frame=max_frame,
                )
            )
        )
        if result.resync:
            await self.send_frame(
                self.codec.encode(Resync(reason="backlog_dropped", last_seq=resume_at))
            )
        self.cursor = resume_at
        await self._write_rows(result.replay)
        if not self._backlog:
            self.cursor = max(self.cursor, result.db_last_seq)
        self.synced = True
        await self._drain_waiting()

    async def offer(
        self, seq: int, delivery_id: int, message_id: str, render: Render
    ) -> None:
        """A live wake-up for one committed delivery of this device."""
        if self.closed or seq <= self.cursor:
            return
        if self._backlog and self._catch_up is None:
            return  # committed: the catch-up that acks start reads it
        if not self.synced or self._catch_up is not None or seq != self.cursor + 1:
            self._waiting.append((seq, delivery_id, message_id, render))
            if self.synced and self._catch_up is None:
                self.request_catch_up()
            return
        if len(self.inflight) >= self.window:
            # The device stopped reading or acking: rather than buffer without
            # bound in the server, close; it resumes from its last_seq.
            logger.info("device %s too slow, closing", self.device_id)
            self.stop()
            await self.close(CLOSE_TOO_SLOW)
            return
        await self._write(seq, delivery_id, message_id, render(seq))

    def request_catch_up(self) -> None:
        """Fetch what is open above the cursor (a wake-up was lost)."""
        if self.synced and self._catch_up is None and not self.closed:
            self._catch_up = asyncio.ensure_future(self._run_catch_up())

    def hint_pending(self, seq: int) -> None:
        """The database holds a pending seq for us that no wake-up announced."""
        if self.synced and seq > self.cursor:
            self._waiting.append((seq, 0, "", _unrendered))
            self.request_catch_up()

    def acked(self, seq: int, message_id: str) -> bool:
        """Record an ack; False if the id does not match what was sent."""
        if seq > self.cursor:
            return False  # never sent to this device
        entry = self.inflight.pop(seq, None)
        if entry is None:
            # Sent earlier than the in-flight window: checked in the database.
            self.node.receipts.acked_late.append((self.device_id, seq, message_id))
            return True
        if entry[1] != message_id:
            self.inflight[seq] = entry
            return False
        self.node.receipts.delivered.append(entry[0])
        if self._backlog and len(self.inflight) <= self.window // 2:
            self.request_catch_up()
        return True

    def acked_upto(self, seq: int) -> bool:
        """A cumulative ack: every push written here with a seq up to `seq`.

        False when `seq` is above anything written to this socket; what was
        written up to the cursor is recorded all the same.
        """
        delivered = self.node.receipts.delivered
        inflight = self.inflight
        while inflight:
            first = next(iter(inflight))
            if first > seq:
                break
            delivered.append(inflight.pop(first)[0])
        if self._backlog and len(inflight) <= self.window // 2:
            self.request_catch_up()
        return seq <= self.cursor

    def opened(self, seq: int, message_id: str) -> None:
        self.node.receipts.opened.append((self.device_id, seq, message_id))

    def carries_receipt(self, frame: object) -> bool:
        """Whether a frame acknowledges (or opens) a push written here.

        Such frames do the work the protocol asks for, so the inbound rate
        limit never refuses them (docs/protocol.md): a device acking a
        replay of 500 pushes one by one was closed 4400 with its acks lost.
        Their number is bounded by the pushes written, not by the device.
        """
        if isinstance(frame, Ack):
            entry = self.inflight.get(frame.seq)
            return entry is not None and entry[1] == frame.id
        if isinstance(frame, AckUpto):
            return bool(self.inflight) and frame.seq >= next(iter(self.inflight))
        if not isinstance(frame, Opened) or frame.seq > self.cursor:
            return False
        if self._opens_owed <= 0:
            return False
        self._opens_owed -= 1
        return True

    def stop(self) -> None:
        self.closed = True
        if self._catch_up is not None:
            self._catch_up.cancel()

    async def _run_catch_up(self) -> None:
        try:
            while (self._waiting or self._backlog) and not self.closed:
                room = min(REPLAY_BATCH, self.window - len(self.inflight))
                if room <= 0:
                    self._backlog = True  # acks restart the catch-up
                    self._waiting = []
                    return
                seen = self._waiting
                self._waiting = []
                rows = await catch_up_batcher(self.node).fetch(
                    self.device_id, self.cursor, room
                )
                await self._write_rows(rows)
                if len(rows) < room:
                    # The query ran after every wake-up in `seen` arrived, so
                    # what it did not return is no longer open.
                    self._backlog = False
                    self.cursor = max([self.cursor] + [w[0] for w in seen])
                else:
                    self._backlog = True
        except Exception:
            logger.warning("catch-up failed for %s", self.device_id, exc_info=True)
            self._waiting = []  # the sweep retries from the database
        finally:
            self._catch_up = None

    async def _drain_waiting(self) -> None:
        waiting, self._waiting = sorted(self._waiting), []
        for seq, delivery_id, message_id, render in waiting:
            await self.offer(seq, delivery_id, message_id, render)

    async def _write_rows(self, rows: list[tuple[int, int, dict[str, Any]]]) -> None:
        for seq, delivery_id, fields in rows:
            if self.closed:
                return
            if seq > self.cursor:
                if len(self.inflight) >= self.window:
                    # The rest stays open in the database; acks resume.
                    self._backlog = True
                    return
                frame = self.codec.encode(inbox_frame(seq, fields))
                await self._write(seq, delivery_id, fields["id"], frame)

    async def _write(
        self, seq: int, delivery_id: int, message_id: str, frame: str | bytes
    ) -> None:
        self.cursor = seq
        self.inflight[seq] = (delivery_id, message_id)
        if len(self.inflight) > MAX_INFLIGHT:
            self.inflight.popitem(last=False)
        self._opens_owed = min(self._opens_owed + 1, MAX_INFLIGHT)
        self.node.receipts.sent.append(delivery_id)
        await self.send_frame(frame)


def _unrendered(seq: int) -> str:
    # Hints only move the catch-up; the catch-up writes rows it read itself.
    raise AssertionError("a pending hint is never written")


def template_renderer(codec: Codec, push: dict[str, Any]) -> Render:
    template: PushTemplate = codec.push_template(push)
    return template.render
