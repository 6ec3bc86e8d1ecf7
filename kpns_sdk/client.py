"""The asyncio device client: register once, hold the socket, receive pushes.

It behaves like the JavaScript SDK (docs/clients.md): pushes go to a handler
and are acked once it returns, ``last_seq`` is kept in a store and sent in
``hello`` so a reconnect resumes without duplicates, heartbeats follow
``welcome.heartbeat``, and reconnects back off exponentially with full jitter.
Acks are cumulative (protocol 1.1): one ``ack_upto`` with the highest seq
handled, at most every ``ack_delay`` seconds or once ``ack_batch`` pushes
wait, and before a clean stop; ``ack_each=True`` acks every push with ``ack``.
End-to-end encrypted pushes (docs/e2ee.md): ``enable_encryption()`` keeps a
key pair in the store and registers its public key; encrypted pushes reach
the handler decrypted, or the ``undecryptable`` listeners when they cannot be.
"""

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kpns_sdk import api
from kpns_sdk.e2ee import CONTENT_FIELDS, DecryptError, DeviceKey, decrypt_with
from kpns_sdk.protocol import (
    TOKEN_SUBPROTOCOL_PREFIX,
    Ack,
    AckUpto,
    Error,
    Hello,
    Opened,
    Ping,
    Pong,
    ProtocolError,
    Push,
    Recall,
    Resync,
    Update,
    Welcome,
    codec_for,
)

logger = logging.getLogger(__name__)

PROFILE_FIELDS = (
    "platform",
    "alias",
    "tags",
    "locale",
    "timezone",
    "app_version",
    "attributes",
)

# Close codes (docs/protocol.md, section 6) in plain words.
CLOSE_REASONS = {
    1000: "closed by the server",
    1001: "server restarting",
    1006: "connection lost",
    1009: "frame too large",
    1011: "server error",
    1012: "server restarting",
    1013: "server busy",
    4400: "protocol error",
    4403: "token revoked",
    4408: "idle timeout",
    4409: "replaced by another connection of this device",
    4429: "too slow to acknowledge",
    4503: "server busy",
}
TERMINAL = ("revoked", "replaced", "failed")


@dataclass(frozen=True)
class StateChange:
    """One change of connection state, with plain words in ``str()``."""

    state: str  # registering, connecting, connected, reconnecting, stopped, + TERMINAL
    reason: str = ""
    delay: float | None = None  # seconds until the next attempt (reconnecting)
    code: int | None = None  # the close code, when a socket closed
    device_id: str | None = None

    def __str__(self) -> str:
        if self.state == "reconnecting":
            return f"reconnecting in {self.delay or 0:.1f} s ({self.reason})"
        if self.state == "revoked":
            return "token revoked: register again"
        if self.state == "replaced":
            return "replaced: this device connected elsewhere"
        if self.state == "failed":
            return f"failed: {self.reason}"
        return f"{self.state} ({self.reason})" if self.reason else self.state


# Stores ----------------------------------------------------------------------


class MemoryStore:
    """Keeps the device in memory: for tests and short-lived programs."""

    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        return dict(self.data) if self.data else None

    def save(self, data: dict[str, Any]) -> None:
        self.data = dict(data)

    def clear(self) -> None:
        self.data = None


class FileStore:
    """Keeps the device in a small JSON file (written atomically, mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".kpns-", text=True)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
            os.chmod(tmp, 0o600)  # it holds the device token
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# The client ------------------------------------------------------------------


@dataclass
class Stats:
    connects: int = 0
    pushes: int = 0
    controls: int = 0  # recall and update frames handled (protocol 1.3)
    duplicates: int = 0
    acks: int = 0  # ack and ack_upto frames sent
    pings: int = 0
    pongs: int = 0


@dataclass
class _Outcome:
    opened: bool = False
    welcomed: bool = False
    code: int | None = None
    reason: str = ""
    status: int | None = None  # HTTP status of a refused handshake
    error: BaseException | None = None


@dataclass
class _Acks:
    """Pushes of one socket handled and not yet acked (see _acknowledge)."""

    seq: int = 0  # the highest handled
    count: int = 0  # handled since the last ack_upto
    sent: int = 0  # the last ack_upto sent
    each: bool = False  # the server refused ack_upto: one ack per push
    timer: asyncio.TimerHandle | None = None
    flush: "asyncio.Task[None] | None" = None


@dataclass
class _Decision:
    reason: str = ""
    stop: str | None = None
    reregister: bool = False


Handler = Callable[[Any], Any]


@dataclass
class _Listeners:
    push: list[Handler] = field(default_factory=list)
    state: list[Handler] = field(default_factory=list)
    error: list[Handler] = field(default_factory=list)
    resync: list[Handler] = field(default_factory=list)
    welcome: list[Handler] = field(default_factory=list)
    # (push, DecryptError): an encrypted push this device cannot read. It is
    # acked all the same (a retry could not help) and not given to `push`.
    undecryptable: list[Handler] = field(default_factory=list)
    # Protocol 1.3: a Recall (remove the push recall.id) or an Update (show
    # update.title/body/... for the push update.id). Acked when they return.
    recall: list[Handler] = field(default_factory=list)
    update: list[Handler] = field(default_factory=list)


class Client:
    """One device of one app.

    ::

        async def show(push):
            print(push.title)          # acked when this returns

        client = Client("https://push.example.com", "ck_…", on_push=show,
                        store=FileStore("device.json"), device={"tags": ["vip"]})
        await client.run()             # until stop(), or revoked/replaced
    """

    def __init__(
        self,
        server: str,
        client_key: str | None = None,
        *,
        store: MemoryStore | FileStore | None = None,
        encoding: str = "json",
        device: dict[str, Any] | None = None,
        on_push: Handler | None = None,
        on_state: Handler | None = None,
        on_error: Handler | None = None,
        on_resync: Handler | None = None,
        on_recall: Handler | None = None,
        on_update: Handler | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        pong_timeout: float = 10.0,
        connect_timeout: float = 15.0,
        http_timeout: float = api.DEFAULT_TIMEOUT,
        reregister: bool = False,
        ack_each: bool = False,
        ack_delay: float = 0.05,
        ack_batch: int = 64,
    ) -> None:
        self.server = server.rstrip("/")
        self.store = store or MemoryStore()
        stored = self.store.load() or {}
        self.client_key = client_key or stored.get("client_key")
        if not self.client_key:
            raise ValueError("client_key is required (no device is stored yet)")
        self.codec = codec_for(encoding)
        self.device = {k: v for k, v in (device or {}).items() if k in PROFILE_FIELDS}
        if device is not None:
            self.device.setdefault("platform", "other")
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.pong_timeout = pong_timeout
        self.connect_timeout = connect_timeout
        self.http_timeout = http_timeout  # each HTTP call: register, update, events
        self.reregister = reregister
        self.ack_each = ack_each
        self.ack_delay = max(0.0, ack_delay)
        self.ack_batch = max(1, int(ack_batch))

        self.state = "idle"
        self.device_id: str | None = None
        self.last_seq = 0
        self.stats = Stats()
        self.listeners = _Listeners()
        for name, handler in (
            ("push", on_push),
            ("state", on_state),
            ("error", on_error),
            ("resync", on_resync),
            ("recall", on_recall),
            ("update", on_update),
        ):
            if handler is not None:
                getattr(self.listeners, name).append(handler)
        self._stored: dict[str, Any] | None = None
        self._running = False
        self._attempt = 0
        self._ws: ClientConnection | None = None
        self._queue: asyncio.Queue[tuple[Push | Recall | Update, _Acks]] = (
            asyncio.Queue()
        )
        self._acks: _Acks | None = None  # the live socket's
        self._ack_upto_refused = False  # the server predates protocol 1.1
        self._pending_opens: list[Opened] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[str] | None = None

    # Public API ----------------------------------------------------------------

    def on(self, event: str, handler: Handler) -> None:
        """Add a handler: push, recall, update (may be async; the ack waits),
        state, error, resync, welcome."""
        getattr(self.listeners, event).append(handler)

    @property
    def token(self) -> str | None:
        return self._stored["token"] if self._stored else None

    async def register(self) -> tuple[str, str]:
        """Register now unless a device is stored; returns (device id, token)."""
        self._load()
        if self._stored is None:
            await self._set_state(StateChange("registering"))
            fields = self.device or {"platform": "other"}
            async with _http(self.http_timeout) as http:
                body = await api.register(http, self.server, self.client_key, **fields)
            self._stored = {
                "server": self.server,
                "client_key": self.client_key,
                "device_id": body["id"],
                "token": body["token"],
                "last_seq": 0,
                "profile": fields,
            }
            self.last_seq = 0
            self._save()
        self.device_id = self._stored["device_id"]
        return self._stored["device_id"], self._stored["token"]

    async def update(self, **fields: Any) -> dict[str, Any]:
        """PATCH /api/v1/device: change this device's fields (tags replace)."""
        _, token = await self.register()
        wanted = {k: v for k, v in fields.items() if k in PROFILE_FIELDS}
        async with _http(self.http_timeout) as http:
            body = await api.device_update(http, self.server, token, **wanted)
        assert self._stored is not None
        self._stored["profile"] = {**(self._stored.get("profile") or {}), **wanted}
        self._save()
        return body

    async def enable_encryption(self, *, rotate: bool = False) -> str:
        """Keep a key pair for end-to-end encrypted pushes and register its
        public key; returns its kid. `rotate` makes a new pair: the previous
        private key is kept (one generation) so that pushes already queued to
        it still decrypt (docs/e2ee.md, "Key rotation")."""
        _, token = await self.register()
        assert self._stored is not None
        stored = list(self._stored.get("e2ee_keys") or [])
        if rotate or not stored:
            stored = [DeviceKey.generate().stored(), *stored][:2]
        current = DeviceKey.from_stored(stored[0])
        async with _http(self.http_timeout) as http:
            await api.device_key_set(
                http,
                self.server,
                token,
                kid=current.kid,
                public_key=current.public_key,
            )
        self._stored["e2ee_keys"] = stored
        self._save()
        return current.kid

    def _device_keys(self) -> list[DeviceKey]:
        stored = (self._stored or {}).get("e2ee_keys") or []
        return [DeviceKey.from_stored(text) for text in stored]

    def start(self) -> "asyncio.Task[str]":
        """Run in a background task (see run())."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())
        return self._task

    async def run(self) -> str:
        """Connect and stay connected until stop() or a terminal state.

        Returns the final state: stopped, revoked, replaced or failed.
        """
        self._running = True
        worker = asyncio.ensure_future(self._work())
        try:
            await self._loop()
        finally:
            self._running = False
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self.state not in TERMINAL:
            await self._set_state(StateChange("stopped"))
        return self.state

    async def stop(self) -> None:
        """Close the socket and stop reconnecting."""
        self._running = False
        self._wake.set()
        await self._flush_acks()  # what was handled is acked before the close
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None and self._task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 15)

    async def reset(self) -> None:
        """Forget the stored device: the next run registers a new one."""
        await self.stop()
        self.store.clear()
        self._stored = None
        self.device_id = None
        self.last_seq = 0

    async def opened(self, push: Push) -> None:
        """Report that the user opened this push's notification."""
        frame = Opened(id=push.id, seq=push.seq)
        if not await self._send_live(frame):
            self._pending_opens.append(frame)  # sent after the next welcome

    async def report_event(self, message_id: str, name: str) -> bool:
        """Report an app event (e.g. ``crash``) about the push ``message_id``
        for canary rollouts (docs/api.md, "POST /api/v1/device/events").

        Counted once per device, message and name: returns False when this
        device had reported it already. Raises ``ApiError`` when the server
        refuses it (400 for a bad name, 404 for a push this device was never
        sent) and ``httpx.TimeoutException`` after ``http_timeout`` seconds.
        """
        _, token = await self.register()
        async with _http(self.http_timeout) as http:
            return await api.device_event(
                http, self.server, token, message_id=str(message_id), name=name
            )

    async def __aenter__(self) -> "Client":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # The connection loop -------------------------------------------------------

    async def _loop(self) -> None:
        while self._running:
            try:
                await self.register()
                if self.device and not self._same_profile():
                    await self.update(**self.device)
                outcome = await self._session()
            except (api.ApiError, httpx.HTTPError, OSError) as exc:
                outcome = _Outcome(error=exc)
            if not self._running:
                break
            decision = await self._decide(outcome)
            if decision.stop:
                self._running = False
                await self._set_state(
                    StateChange(decision.stop, decision.reason, code=outcome.code)
                )
                break
            if decision.reregister:
                self.store.clear()
                self._stored = None
                self.last_seq = 0
            ceiling = min(
                self.backoff_cap, self.backoff_base * 2 ** min(self._attempt, 30)
            )
            delay = random.uniform(0, ceiling)  # full jitter
            self._attempt += 1
            await self._set_state(
                StateChange("reconnecting", decision.reason, delay, outcome.code)
            )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _decide(self, outcome: _Outcome) -> _Decision:
        error = outcome.error
        if isinstance(error, api.ApiError):
            if error.status == 401:
                return self._revoked()
            if 400 <= error.status < 500 and error.status not in (408, 429):
                await self._emit("error", error)
                return _Decision(str(error), stop="failed")
            return _Decision(f"server error {error.status}")
        if error is not None:
            if not isinstance(error, OSError | TimeoutError | httpx.TransportError):
                await self._emit("error", error)  # the reason below says the rest
            return _Decision("server unreachable")
        if outcome.status is not None:
            # The handshake was refused (403): is the token still valid?
            assert self._stored is not None
            try:
                async with _http(self.http_timeout) as http:
                    await api.device_get(http, self.server, self._stored["token"])
            except api.ApiError as exc:
                if exc.status == 401:
                    return self._revoked()
                return _Decision(f"server error {exc.status}")
            except (httpx.HTTPError, OSError):
                return _Decision("server unreachable")
            return _Decision(f"handshake refused ({outcome.status})")
        code = outcome.code or 1006
        if code == 4403:
            return self._revoked()
        if code == 4409:
            return _Decision(CLOSE_REASONS[4409], stop="replaced")
        if code in (4503, 1013):
            self._attempt = max(self._attempt, 3)
        if code in (4400, 1009):
            await self._emit("error", ProtocolError("closed", CLOSE_REASONS[code]))
        if not outcome.opened:
            return _Decision("server unreachable")
        return _Decision(
            outcome.reason or CLOSE_REASONS.get(code, f"closed with {code}")
        )

    def _revoked(self) -> _Decision:
        if self.reregister:
            return _Decision("token revoked, registering again", reregister=True)
        return _Decision(CLOSE_REASONS[4403], stop="revoked")

    async def _session(self) -> _Outcome:
        assert self._stored is not None
        outcome = _Outcome()
        url = self.server.replace("http", "ws", 1) + "/ws/v1/device/"
        await self._set_state(StateChange("connecting"))
        try:
            ws = await connect(
                url,
                subprotocols=[  # type: ignore[list-item]
                    self.codec.name,
                    TOKEN_SUBPROTOCOL_PREFIX + self._stored["token"],
                ],
                open_timeout=self.connect_timeout,
                close_timeout=2,
                max_size=2**20,
            )
        except InvalidStatus as exc:
            outcome.status = exc.response.status_code
            return outcome
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            outcome.error = exc
            return outcome
        outcome.opened = True
        if not self._running:  # stopped while connecting
            await ws.close()
            return outcome
        self._ws = ws
        # Acks are for this socket only: a push handled after it closed is
        # covered by the next hello's last_seq, or sent again and acked as a
        # duplicate.
        acks = self._acks = _Acks(each=self._ack_upto_refused)
        heartbeat: asyncio.Task[None] | None = None
        self._last_received = time.monotonic()
        try:
            await ws.send(self.codec.encode(Hello(last_seq=self.last_seq)))
            async with asyncio.timeout(self.connect_timeout) as deadline:
                welcome = await self._receive_welcome(ws)
                deadline.reschedule(None)
            if welcome is None:
                return outcome
            outcome.welcomed = True
            heartbeat = asyncio.ensure_future(self._heartbeat(ws, welcome.heartbeat))
            async for data in ws:
                await self._on_frame(data)
        except TimeoutError:
            outcome.reason = "no welcome in time"
        except ConnectionClosed:
            pass
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            if acks.timer is not None:
                acks.timer.cancel()
            if self._acks is acks:
                self._acks = None
            self._ws = None
            if ws.close_code is None:
                with contextlib.suppress(Exception):
                    await ws.close()
            outcome.code = outcome.code or ws.close_code or 1006
            outcome.reason = outcome.reason or ws.close_reason or ""
        return outcome

    async def _receive_welcome(self, ws: ClientConnection) -> Welcome | None:
        while True:
            frame = await self._decode(await ws.recv())
            if isinstance(frame, Welcome):
                break
            if frame is not None:
                await self._dispatch(frame)
        self._attempt = 0
        self.stats.connects += 1
        if frame.last_seq < self.last_seq:
            # The server's newest seq is below ours (a restored database):
            # keeping ours would drop every new push.
            self.last_seq = frame.last_seq
            self._save_seq()
        self.device_id = frame.device_id
        opens, self._pending_opens = self._pending_opens, []
        for opened in opens:
            await ws.send(self.codec.encode(opened))
        await self._set_state(StateChange("connected", device_id=frame.device_id))
        await self._emit("welcome", frame)
        return frame

    async def _decode(self, data: str | bytes) -> Any:
        self._last_received = time.monotonic()
        try:
            return self.codec.decode_server(data)
        except ProtocolError as exc:
            await self._emit("error", exc)
            return None

    async def _on_frame(self, data: str | bytes) -> None:
        frame = await self._decode(data)
        if frame is not None:
            await self._dispatch(frame)

    async def _dispatch(self, frame: Any) -> None:
        if isinstance(frame, Push | Recall | Update):  # one queue: seq order
            assert self._acks is not None
            self._queue.put_nowait((frame, self._acks))
        elif isinstance(frame, Pong):
            self.stats.pongs += 1
        elif isinstance(frame, Error):
            acks = self._acks
            if frame.code == "unknown_type" and acks and acks.sent and not acks.each:
                # A server before protocol 1.1 does not know ack_upto: ack
                # each push from now on. What it ignored is recorded by the
                # next hello's last_seq.
                self._ack_upto_refused = acks.each = True
            await self._emit(
                "error", ProtocolError(frame.code, frame.message, frame.ref)
            )
        elif isinstance(frame, Resync):
            await self._emit("resync", frame)

    async def _heartbeat(self, ws: ClientConnection, every: int) -> None:
        every = max(1, every)
        while True:
            await asyncio.sleep(every)
            sent = time.monotonic()
            self.stats.pings += 1
            await ws.send(self.codec.encode(Ping(t=int(time.time() * 1000))))
            await asyncio.sleep(self.pong_timeout)
            if self._last_received < sent:
                logger.info("no answer to ping: dropping the connection")
                ws.transport.abort()  # the reader sees the connection lost
                return

    async def _work(self) -> None:
        """Hand pushes to the handlers one at a time, in order; ack after."""
        while True:
            push, acks = await self._queue.get()
            await self._handle_push(push, acks)

    async def _handle_push(self, push: Any, acks: _Acks) -> None:
        if push.seq <= self.last_seq:
            # Sent again after a reconnect, or already handled: never twice.
            self.stats.duplicates += 1
            await self._acknowledge(push, acks)
            return
        if isinstance(push, Recall | Update):
            await self._call(push.TYPE, push)
            self._handled(push)
            await self._acknowledge(push, acks)
            return
        if push.enc is not None:
            try:
                push = _decrypted(push, decrypt_with(self._device_keys(), push.enc))
            except DecryptError as exc:
                await self._emit("undecryptable", (push, exc))
                self._handled(push)
                await self._acknowledge(push, acks)
                return
        for handler in list(self.listeners.push):
            try:
                result = handler(push)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A failing handler does not block the stream: it is reported
                # and the push counts as handled.
                logger.exception("push handler failed")
                await self._emit("error", exc)
        self._handled(push)
        await self._acknowledge(push, acks)

    async def _call(self, event: str, frame: Any) -> None:
        """The handlers of a recall or update, in order, awaited like push's."""
        for handler in list(getattr(self.listeners, event)):
            try:
                result = handler(frame)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("%s handler failed", event)
                await self._emit("error", exc)

    def _handled(self, push: Any) -> None:
        if isinstance(push, Recall | Update):
            self.stats.controls += 1
        else:
            self.stats.pushes += 1
        self.last_seq = push.seq
        self._save_seq()

    async def _acknowledge(self, push: Any, acks: _Acks) -> None:
        if acks is not self._acks:
            return  # its socket is gone (see _session)
        if self.ack_each or acks.each:
            if await self._send_live(Ack(id=push.id, seq=push.seq)):
                self.stats.acks += 1
            return
        # Pushes are handled one at a time in seq order, so acking the
        # highest handled seq acks exactly the pushes handled.
        acks.seq = max(acks.seq, push.seq)
        acks.count += 1
        if acks.count >= self.ack_batch:
            await self._flush_acks(acks)
        elif acks.timer is None:
            acks.timer = asyncio.get_running_loop().call_later(
                self.ack_delay, self._flush_later, acks
            )

    def _flush_later(self, acks: _Acks) -> None:
        acks.timer = None
        acks.flush = asyncio.ensure_future(self._flush_acks(acks))

    async def _flush_acks(self, acks: _Acks | None = None) -> None:
        acks = acks or self._acks
        if acks is None:
            return
        if acks.timer is not None:
            acks.timer.cancel()
            acks.timer = None
        if acks is not self._acks or acks.each or acks.seq <= acks.sent:
            return
        acks.sent, acks.count = acks.seq, 0  # before the await: no double send
        if await self._send_live(AckUpto(seq=acks.sent)):
            self.stats.acks += 1

    async def _send_live(self, frame: Any) -> bool:
        ws = self._ws
        if ws is None or self.state != "connected":
            return False
        try:
            await ws.send(self.codec.encode(frame))
        except ConnectionClosed:
            return False
        return True

    # State, storage, HTTP ------------------------------------------------------

    async def _set_state(self, change: StateChange) -> None:
        self.state = change.state
        await self._emit("state", change)

    async def _emit(self, event: str, value: Any) -> None:
        for handler in list(getattr(self.listeners, event)):
            try:
                result = handler(value)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("%s handler failed", event)

    def _load(self) -> None:
        if self._stored is not None:
            return
        stored = self.store.load()
        if (
            stored
            and stored.get("token")
            and stored.get("server") == self.server
            and stored.get("client_key") == self.client_key
        ):
            self._stored = stored
            self.last_seq = max(self.last_seq, int(stored.get("last_seq") or 0))
            self.device_id = stored.get("device_id")

    def _save(self) -> None:
        if self._stored is not None:
            self.store.save(self._stored)

    def _save_seq(self) -> None:
        if self._stored is not None:
            self._stored["last_seq"] = self.last_seq
            self._save()

    def _same_profile(self) -> bool:
        stored = (self._stored or {}).get("profile") or {}
        return all(
            _canonical(stored.get(name)) == _canonical(value)
            for name, value in self.device.items()
        )


@contextlib.asynccontextmanager
async def _http(seconds: float) -> AsyncIterator[httpx.AsyncClient]:
    # Registration, token checks and events are rare: one short-lived client each.
    async with httpx.AsyncClient(timeout=seconds) as http:
        yield http


def _decrypted(push: Push, payload: dict[str, Any]) -> Push:
    """The push with its content from the decrypted payload; `enc` stays,
    so the handler can tell it travelled end-to-end encrypted."""
    content: dict[str, Any] = {
        name: payload[name]
        for name in CONTENT_FIELDS
        if name in payload
        and isinstance(payload[name], dict if name == "data" else str)
    }
    return dataclasses.replace(push, **content)


def _canonical(value: Any) -> str:
    if isinstance(value, list):
        value = sorted(value)
    return json.dumps(value, sort_keys=True)
