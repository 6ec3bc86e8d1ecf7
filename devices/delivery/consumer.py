"""The device WebSocket endpoint, /ws/v1/device/ (docs/protocol.md).

An edge: it authenticates the handshake, decodes frames with
devices.protocol and hands them to the device's Session and the node. It has
no channel of its own: the node receives for every socket of the process.
"""

import logging
import time
from typing import Any
from uuid import UUID

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from devices.conf import kpns_setting
from devices.delivery import dberrors, metrics
from devices.delivery.node import (
    CLOSE_IDLE,
    CLOSE_REPLACED,
    CLOSE_SERVICE_RESTART,
    get_node,
)
from devices.delivery.protocol import (
    Ack,
    AckUpto,
    Codec,
    Error,
    Frame,
    Hello,
    Opened,
    Ping,
    Pong,
    ProtocolError,
    negotiate,
    token_from_subprotocols,
)
from devices.delivery.session import CLOSE_TOO_SLOW, Session
from devices.patches.directwrite import websocket_writer
from devices.registry.origins import origin_allowed

logger = logging.getLogger(__name__)

CLOSE_PROTOCOL_ERROR = 4400
# The server gave up on a device: too slow to read (4429) or misbehaving
# (4400). Recorded on the device (bad_close_at): canary waves judge it.
BAD_CLOSES = frozenset({CLOSE_TOO_SLOW, CLOSE_PROTOCOL_ERROR})
CLOSE_TOO_BIG = 1009
# "Try again later" is 4503, after HTTP 503. kpns_serve can send RFC 6455's
# 1013 (devices.patches.daphne), but stock Daphne and other ASGI servers close only
# with 1000 or 3000-4999, and clients since protocol 1.0 know 4503. 4500 is
# any other server-side failure (after HTTP 500).
CLOSE_TRY_AGAIN_LATER = 4503
CLOSE_SERVER_ERROR = 4500
# Token checks of this process (one event loop) on the database pool now.
# A drain of 19,000 sockets onto one process queued ~15,000: the hello
# batches of the same pool waited behind checks of sockets whose devices
# had long given up, no device was welcomed, and each retry queued another
# check. Past KPNS_MAX_PENDING_HANDSHAKES a socket is told 4503 without a
# query, and SDKs back off from 8 s (docs/operations.md, "Drains at full
# size").
_token_checks = {"running": 0}
RATE_LIMIT_WINDOW_SECONDS = 10.0
# A client that sends this many bad frames in a row is broken or hostile.
MAX_CONSECUTIVE_ERRORS = 20


class DeviceConsumer(AsyncWebsocketConsumer):
    # No per-socket channel: wake-ups reach the node's one channel instead.
    channel_layer_alias = None

    device_id: UUID
    codec: Codec
    session: Session | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Channels' loop (await_many_dispatch) wraps every receive in a new
        # Task and an asyncio.wait(), made to merge the socket with a channel
        # layer channel. With no layer there is one source: await it directly.
        # One task less per socket, and no Task, wait set and waiter future
        # per frame read (docs/benchmarks.md).
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        # Pushes written straight to Daphne's protocol where the server is
        # Daphne (devices.patches.daphne); None elsewhere.
        self._write = websocket_writer(send)
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale DB connections in a thread hop before every
        # message (34-39% of CPU, docs/field-notes.md trap 5); our ORM calls
        # go through database_sync_to_async, which already does it.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        headers = dict(self.scope.get("headers", []))
        subprotocols = self.scope.get("subprotocols", [])
        # Chosen before anything can fail: frames that arrive on a socket
        # accepted only to be closed 4503 are still decoded with it.
        self.codec, accepted = negotiate(subprotocols)
        self.last_received = time.monotonic()
        if not origin_allowed(headers.get(b"origin")):
            await self._refuse("origin_not_allowed", headers.get(b"origin"))
            return
        token = token_from_subprotocols(subprotocols)
        if token is None:
            await self._refuse("no_token")
            return
        if _token_checks["running"] >= kpns_setting("MAX_PENDING_HANDSHAKES"):
            await self._refuse("database_busy")
            await self.accept(accepted)
            await self.close(CLOSE_TRY_AGAIN_LATER)
            return
        _token_checks["running"] += 1
        try:
            # Checked with the other handshakes of the same few milliseconds.
            device_id = await get_node().tokens.authenticate(token)
        except DatabaseError as exc:
            # Accept only to say "come back later": a 403 would read as a
            # bad token and make SDKs give up. A database that answers
            # with an error is not an outage: 4500, and the cause is logged.
            outage = dberrors.unreachable(exc)
            reason = "database_unavailable" if outage else "database_error"
            await self._refuse(reason, exc_info=not outage)
            await self.accept(accepted)
            await self.close(CLOSE_TRY_AGAIN_LATER if outage else CLOSE_SERVER_ERROR)
            return
        finally:
            _token_checks["running"] -= 1
        if device_id is None:
            await self._refuse("bad_token")
            return
        self.device_id = device_id
        await self.accept(accepted)
        # The header list is shared by every scope copy (and Daphne) for the
        # socket's life; it was needed only for the checks above.
        if isinstance(self.scope.get("headers"), list):
            self.scope["headers"].clear()
        self.connected_at = self.last_received
        self._node = get_node()
        metrics.stats.handshakes += 1
        if self._node.draining:
            # Accepted before the listener closed: go elsewhere.
            await self.close(CLOSE_SERVICE_RESTART)
            return
        self._node.watch(self)
        await self._node.ensure_started()

    async def _refuse(
        self, reason: str, origin: bytes | None = None, exc_info: bool = False
    ) -> None:
        """Log and count a refused handshake (never the token), then refuse.

        Refusals that happen before accept are HTTP 403; the caller accepts
        first where the device must read a close code instead.
        """
        metrics.stats.refuse(reason)
        client = self.scope.get("client") or ("", 0)
        logger.info(
            "handshake refused: %s",
            reason,
            exc_info=exc_info,
            extra={
                "event": "handshake_refused",
                "reason": reason,
                "client": client[0],
                "origin": origin.decode("latin-1")[:200] if origin else None,
            },
        )
        if not reason.startswith("database_"):
            await self.close()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        self.last_received = time.monotonic()
        data = text_data if text_data is not None else bytes_data
        if data is None:
            return
        if len(data) > kpns_setting("MAX_FRAME_BYTES"):
            await self.close(CLOSE_TOO_BIG)
            return
        if data == _encoded_once(self.codec, Ping):
            # A heartbeat as the SDKs write it, answered without decoding:
            # a process meets every socket's ping at once after a restart,
            # and decoding was a fifth of answering such a burst.
            await self._heartbeat()
            return
        try:
            frame = self.codec.decode_client(data)
        except ProtocolError as exc:
            if self._take_token():
                await self._send_error(exc)
            else:
                await self._rate_limited(None)
            return
        # Acks (and opens) of pushes written here are what the protocol
        # asks for: the flood limit applies only to frames that do no
        # useful work, so a compliant device is never refused an ack.
        useful = self.session is not None and self.session.carries_receipt(frame)
        if not useful and not self._take_token():
            await self._rate_limited(frame)
            return
        try:
            await self._handle(frame)
            self._errors = 0
        except ProtocolError as exc:
            await self._send_error(exc)

    async def disconnect(self, code: int) -> None:
        node = getattr(self, "_node", None)
        if node is not None:
            node.unwatch(self)
            closed_badly = getattr(self, "_closed_badly", False)
            if self.session is not None or closed_badly:
                await node.detach(self.session, self.device_id, closed_badly)
            self.session = None

    async def _handle(self, frame: object) -> None:
        if isinstance(frame, Ping):
            if frame.t is None:
                # A heartbeat: the same bytes for every socket of a codec.
                await self._send_frame(_encoded_once(self.codec, Pong))
            else:
                await self._send(Pong(t=frame.t))
        elif isinstance(frame, Hello):
            await self._hello(frame)
        elif self.session is None or not self.session.synced:
            raise ProtocolError("not_ready", "Send hello first.", ref=_ref(frame))
        elif isinstance(frame, Ack):
            if not self.session.acked(frame.seq, frame.id):
                raise ProtocolError(
                    "unknown_message", "No such message at that seq.", ref="ack"
                )
        elif isinstance(frame, AckUpto):
            if not self.session.acked_upto(frame.seq):
                raise ProtocolError(
                    "unknown_message",
                    "Nothing was sent at that seq; acknowledged up to the "
                    f"last seq sent, {self.session.cursor}.",
                    ref="ack_upto",
                )
        elif isinstance(frame, Opened):
            self.session.opened(frame.seq, frame.id)

    async def _hello(self, hello: Hello) -> None:
        if self.session is not None:
            raise ProtocolError("invalid_state", "Hello was already sent.", ref="hello")
        node = get_node()
        await node.ensure_started()
        if node.draining or getattr(self, "_closing", False):
            # A drain began: connecting here now could land after the
            # device's reconnect elsewhere and close that newer socket.
            await self.close(CLOSE_SERVICE_RESTART)
            return
        self.session = Session(
            device_id=self.device_id,
            codec=self.codec,
            node=node,
            send_frame=self._send_frame,
            close=self._close_with,
        )
        previous = node.attach(self.session)
        if previous is not None:
            await previous.close(CLOSE_REPLACED)
        try:
            await self.session.start(
                last_seq=hello.last_seq,
                heartbeat=kpns_setting("HEARTBEAT_SECONDS"),
                max_frame=kpns_setting("MAX_FRAME_BYTES"),
            )
        except DatabaseError as exc:
            if dberrors.unreachable(exc):
                logger.warning("session start failed: database unavailable: %s", exc)
                await self.close(CLOSE_TRY_AGAIN_LATER)
            else:
                logger.error("session start failed", exc_info=True)
                await self.close(CLOSE_SERVER_ERROR)

    def overdue(self, hello_before: float, silent_before: float) -> int | None:
        """The close code if this socket never said hello, or went silent.

        Checked by the node's watchdog for every socket every few seconds:
        one task per socket waking each second cost a whole core at 20,000
        idle sockets (docs/benchmarks.md), so the check is two comparisons
        against deadlines the watchdog computes once per round.
        """
        if self.last_received < silent_before:
            return CLOSE_IDLE
        if self.session is None and self.connected_at < hello_before:
            return CLOSE_IDLE
        return None

    async def _heartbeat(self) -> None:
        """What a decoded `ping` without `t` gets, flood limit included."""
        if not self._take_token():
            await self._rate_limited(Ping())
            return
        await self._send_frame(_encoded_once(self.codec, Pong))
        self._errors = 0

    def _take_token(self) -> bool:
        """Per-socket token bucket over inbound frames (docs/protocol.md)."""
        rate = float(kpns_setting("MAX_FRAMES_PER_SECOND"))
        burst = float(kpns_setting("FRAME_BURST"))
        now = self.last_received
        tokens, stamp = getattr(self, "_bucket", (burst, now))
        tokens = min(burst, tokens + (now - stamp) * rate)
        allowed = tokens >= 1.0
        self._bucket = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    async def _rate_limited(self, frame: object) -> None:
        """Answer `rate_limited` (once per second at most); close a flooder.

        The error names the refused frame's type, and its seq for an
        `opened`, so the device knows what to send again.
        """
        now = self.last_received
        start, rejected, told = getattr(self, "_rejected", (now, 0, 0.0))
        if now - start > RATE_LIMIT_WINDOW_SECONDS:
            start, rejected = now, 0
        rejected += 1
        limit = kpns_setting("RATE_LIMIT_CLOSE_AFTER")
        if rejected > limit:
            self._rejected = (start, rejected, told)
            if rejected == limit + 1:
                logger.info("device %s flooding, closing", self.device_id)
                await self.close(CLOSE_PROTOCOL_ERROR)
            return
        if now - told >= 1.0 or isinstance(frame, Opened):
            told = now
            message = "Too many frames; slow down."
            if isinstance(frame, Opened):
                message = f"opened for seq {frame.seq} not recorded; send it again."
            ref = None if frame is None else _ref(frame)
            await self._send(Error(code="rate_limited", message=message, ref=ref))
        self._rejected = (start, rejected, told)

    async def _send_error(self, exc: ProtocolError) -> None:
        self._errors = getattr(self, "_errors", 0) + 1
        await self._send(Error(code=exc.code, message=exc.message, ref=exc.ref))
        if self._errors >= MAX_CONSECUTIVE_ERRORS:
            await self.close(CLOSE_PROTOCOL_ERROR)

    async def _send(self, frame: Frame) -> None:
        await self._send_frame(self.codec.encode(frame))

    async def close(
        self, code: int | bool | None = None, reason: str | None = None
    ) -> None:
        self._closing = True
        if code in BAD_CLOSES:
            self._closed_badly = True
        await super().close(code, reason)

    async def _send_frame(self, data: str | bytes) -> None:
        # Daphne raises (autobahn "Disconnected") on a send after the close
        # began: an unhandled exception that killed the consumer with a
        # traceback when a device pinged right after a 4429 close. What was
        # not written stays open in the database and is replayed.
        if getattr(self, "_closing", False):
            return
        write = self._write
        if write is not None:
            if not write(data):
                self._closing = True
            return
        message: dict[str, Any] = {"type": "websocket.send"}
        message["bytes" if isinstance(data, bytes) else "text"] = data
        try:
            await self.base_send(message)
        except Exception as exc:
            if type(exc).__name__ != "Disconnected":
                raise
            self._closing = True

    async def _close_with(self, code: int) -> None:
        await self.close(code)


_encoded: dict[tuple[str, type], str | bytes] = {}


def _encoded_once(codec: Codec, frame: type[Ping] | type[Pong]) -> str | bytes:
    """Ping or pong without `t`, encoded once per codec: devices that
    connected together ping together, and encoding each answer was 8% of
    a broadcast's samples that met such a burst."""
    key = (codec.name, frame)
    found = _encoded.get(key)
    if found is None:
        found = _encoded[key] = codec.encode(frame())
    return found


def _ref(frame: object) -> str:
    return type(frame).__name__.lower()
