"""The Daphne server of `manage.py kpns_serve`, with a graceful drain.

Daphne's own signal handlers stop the reactor at once: every socket drops
(1006) and the process's devices stay "online" until another node judges it
dead. Here SIGTERM (or SIGINT) drains instead (docs/operations.md):

1. stop listening, so new connections (and nginx's retries) go to the other
   processes;
2. the node refuses new hellos, closes every socket with 1012 (service
   restart) and waits up to KPNS_DRAIN_SECONDS for them to go, writing the
   acks that arrive meanwhile;
3. the node marks what is left offline and deletes its Node row;
4. HTTP requests still running may finish within the same bound; then the
   reactor stops and the process exits 0.

A second signal stops at once.

Importing this module installs Twisted's asyncio reactor (daphne.server):
only kpns_serve imports it.
"""

import asyncio
import logging
import signal
import time
from typing import Any

import autobahn.twisted.websocket as autobahn_twisted
import autobahn.websocket.protocol as autobahn_protocol
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor

from devices import cycles, eagerwrite, metrics, node
from devices.checkers import ChangedConnectionsChecker

logger = logging.getLogger(__name__)

# RFC 6455 registers 1012 (service restart) and 1013 (try again later) for
# servers; autobahn's sendClose() allows only 1000 and 3000-4999, the rule of
# the browser's close() API, so Daphne raised instead of closing.
SERVER_CLOSE_CODES = frozenset({1012, 1013})


def _unstyled(value: object, *args: object, **kwargs: object) -> str:
    return ""


# autobahn builds the arguments of its debug log lines even with debug off:
# hltype()/hlval() (type names coloured with click, when installed) for
# every frame written cost 4.7% of a 20,000-device broadcast's samples
# (docs/benchmarks.md). Only those never-shown debug lines call them.
# Its Twisted adapter does the same for every read (dataReceived): 6% more.
for _module in (autobahn_protocol, autobahn_twisted):
    _module.hltype = _unstyled  # type: ignore[attr-defined]
    _module.hlval = _unstyled  # type: ignore[attr-defined]
# The same for the pretty-printed list of ~40 protocol options it logs at
# debug level for every new connection: 2.5-10% of a server's samples
# while 100,000 sockets connected. (Its other use, printing timings, is for
# protocols that track timings; Daphne's do not.)
autobahn_protocol.pformat = _unstyled  # type: ignore[attr-defined]


def _server_close(self: WebSocketProtocol, code: int | None = None) -> None:
    code = 1000 if code is None else code
    if code in SERVER_CLOSE_CODES:
        self.sendCloseFrame(code=code, isReply=False)
    else:
        self.sendClose(code=code)


def allow_server_close_codes() -> None:
    WebSocketProtocol.serverClose = _server_close  # type: ignore[method-assign]


_on_open = WebSocketProtocol.onOpen


def _on_open_then_trim(self: WebSocketProtocol) -> None:
    """Forget the handshake once the socket is open.

    autobahn keeps the raw request and its parsed headers, Daphne a cleaned
    copy, for the life of every socket; nothing reads them after the
    handshake (Daphne's close log uses only the path).
    """
    _on_open(self)
    self.http_request_data = b""
    self.http_response_data = b""
    self.http_headers = {}
    request = getattr(self, "request", None)
    if request is not None:
        request.headers = {}
        request.params = {}


def trim_open_sockets() -> None:
    WebSocketProtocol.onOpen = _on_open_then_trim  # type: ignore[method-assign]


_on_message_end = WebSocketProtocol.onMessageEnd


def _message_end_unobserved(self: WebSocketProtocol) -> None:
    """A whole message read: hand it to Daphne, and stop there when nothing
    observes the socket's events.

    After onMessage autobahn fires a "message" event for observers; with
    none (Daphne registers none) it still makes a fired Deferred and adds
    an errback to it for every frame a device sends: 7% of a broadcast's
    samples went to that (docs/benchmarks.md). With observers, or while
    failing or timing, autobahn's own method runs.
    """
    if self._listeners is not None or self.failedByMe or self.trackedTimings:
        _on_message_end(self)
        return
    payload = b"".join(self.message_data)
    self.message_data = None
    self._onMessage(payload, self.message_is_binary)


def skip_unobserved_message_events() -> None:
    WebSocketProtocol.onMessageEnd = _message_end_unobserved  # type: ignore[method-assign]


async def _start_node() -> None:
    await node.get_node().ensure_started()


class DrainingServer(ChangedConnectionsChecker):
    def __init__(self, *args: Any, drain_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, signal_handlers=False, **kwargs)
        self.drain_seconds = drain_seconds
        self.ports: list[Any] = []
        self._drain: asyncio.Future[None] | None = None

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def run(self) -> None:
        allow_server_close_codes()
        trim_open_sockets()
        skip_unobserved_message_events()
        eagerwrite.install()
        cycles.install()
        loop = reactor._asyncioEventloop  # type: ignore[attr-defined]
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal, sig)
        # The node starts with the process, not with its first socket: its
        # Node row shows in the admin (and heartbeats) while it is idle too.
        reactor.callWhenRunning(lambda: asyncio.ensure_future(_start_node()))
        super().run()

    def on_signal(self, sig: int) -> None:
        if self._drain is not None:
            logger.warning("second %s: stopping now", signal.Signals(sig).name)
            self.stop()
            return
        logger.info(
            "%s: draining (up to %s s)", signal.Signals(sig).name, self.drain_seconds
        )
        self._drain = asyncio.ensure_future(self.drain())

    async def drain(self) -> None:
        started = time.monotonic()
        deadline = started + self.drain_seconds
        try:
            for port in self.ports:
                port.stopListening()
            this = node._nodes.get(asyncio.get_running_loop())
            if this is not None:
                await this.drain(max(0.0, deadline - time.monotonic()))
            await node.wait_until(lambda: not self._requests_running(), deadline)
        except Exception:
            logger.exception("drain failed; stopping anyway")
        finally:
            logger.info(
                "server stopped after %.2f s of drain", time.monotonic() - started
            )
            metrics.process_exited()
            self.stop()

    def _requests_running(self) -> bool:
        for details in list(getattr(self, "connections", {}).values()):
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                return True
        return False
