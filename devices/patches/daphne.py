"""Daphne: 1012/1013 closes, open sockets without their handshake, upgraded
requests and closed connections freed by reference counting, periodic
checks that visit only the connections that changed.

Written for Daphne 4.2.3 (WRITTEN_FOR). The close codes are required (the
drain closes with 1012); the others are optimisations.
"""

import asyncio
import inspect
import math
from functools import partial
from typing import Any

from daphne.http_protocol import WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor

from devices.patches import directwrite
from devices.patches.guard import Library, Patch, members

LIBRARY = Library("daphne", frozenset({"4.2.3"}))

# RFC 6455 registers 1012 (service restart) and 1013 (try again later) for
# servers; autobahn's sendClose() allows only 1000 and 3000-4999, the rule of
# the browser's close() API, so Daphne raised instead of closing.
SERVER_CLOSE_CODES = frozenset({1012, 1013})


def _server_close(self: WebSocketProtocol, code: int | None = None) -> None:
    code = 1000 if code is None else code
    if code in SERVER_CLOSE_CODES:
        self.sendCloseFrame(code=code, isReply=False)
    else:
        self.sendClose(code=code)


def _check_server_close() -> list[str]:
    return members(
        WebSocketProtocol,
        {
            "serverClose": ("code",),
            "sendClose": ("code", "reason"),
            "sendCloseFrame": ("code", "reasonUtf8", "isReply"),
        },
    )


def _apply_server_close() -> None:
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


def _check_trim() -> list[str]:
    return members(WebSocketProtocol, {"onOpen": ()})


def _apply_trim() -> None:
    WebSocketProtocol.onOpen = _on_open_then_trim  # type: ignore[method-assign]


# Closed connections freed by reference counting. Daphne, Twisted and
# autobahn leave every connection in reference cycles: autobahn resolves
# `is_closed` with the protocol itself (protocol -> Deferred -> protocol),
# and Daphne abandons the HTTP channel and request of a WebSocket upgrade,
# which point at each other. Such objects are freed only by a full garbage
# collection, which the server runs rarely (devices.gcpause): under
# reconnect churn a process grew by about 15 KB per connection (30,000
# reconnects: 145 -> 600 MB), then one collection of 1.2 million objects
# stopped the event loop for 2.7 s. Cutting the cycles' edges once nothing
# uses them lets reference counting free each connection at once.


def release_websocket(protocol: Any) -> None:
    """Drop the results a closed protocol's Deferreds hold (itself, mostly).

    Called once Daphne has forgotten the connection: it is closed and its
    application instance has finished.
    """
    for name in ("is_closed", "is_open", "application_deferred"):
        deferred = getattr(protocol, name, None)
        if deferred is not None and getattr(deferred, "called", False):
            deferred.result = None


def _release_upgraded_request(request: WebRequest) -> None:
    channel = request.channel
    if channel is None:
        return
    request.channel = None
    if request in channel.requests:
        channel.requests.remove(request)


_process = WebRequest.process


def _process_then_release(self: WebRequest) -> None:
    _process(self)
    # An upgraded request handed its transport to the WebSocket protocol
    # (Daphne sets self.transport to None): the channel and the request
    # are left pointing at each other, and nothing else uses them.
    if self.transport is None and self.channel is not None:
        reactor.callLater(0, _release_upgraded_request, self)  # type: ignore[attr-defined]


def _check_release() -> list[str]:
    return members(WebRequest, {"process": ()})


def _apply_release() -> None:
    WebRequest.process = _process_then_release  # type: ignore[method-assign]


# The ping_interval that turns Daphne's protocol pings off.
NO_PINGS = math.inf


class ChangedConnectionsChecker(Server):
    """Daphne's periodic checks, visiting only the connections that need one.

    Daphne walks every connection every second (`application_checker`: reap
    finished application instances, cancel those that outlive their socket)
    and every two seconds (`timeout_checker`: handshake timeouts, protocol
    pings, socket age). At 12,000 sockets per process these walks took 21%
    of a server's samples while 100,000 sockets connected, and they are
    most of an idle server's CPU (docs/benchmarks.md). Here the server
    remembers which connections can need a visit:

    * application checks: a connection that disconnected, or whose
      application instance finished (a done callback), and nothing else;
    * timeout checks: HTTP requests and WebSocket handshakes. An open socket
      needs none unless protocol pings or a socket age limit are on; then
      Daphne's own walk over every connection runs.

    What a visit does is Daphne's own code, run on the connections due.
    Until install() turns it on (`visit_changed_only`), Daphne's own walks
    run unchanged.
    """

    visit_changed_only = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections an application check must visit.
        self._settling: set[Any] = set()
        # Connections a timeout check must visit (not open WebSockets).
        self._opening: set[Any] = set()

    def _walk_every_socket(self) -> bool:
        return self.ping_interval != NO_PINGS or self.websocket_timeout >= 0

    def protocol_connected(self, protocol: Any) -> None:
        super().protocol_connected(protocol)
        if self.visit_changed_only:
            self._opening.add(protocol)

    def protocol_disconnected(self, protocol: Any) -> None:
        super().protocol_disconnected(protocol)
        if self.visit_changed_only:
            self._settling.add(protocol)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        queue = super().create_application(protocol, scope)
        details = self.connections.get(protocol)
        instance = details.get("application_instance") if details else None
        if instance is not None and self.visit_changed_only:
            instance.add_done_callback(lambda _done: self._settling.add(protocol))
        return queue

    def application_checker(self) -> None:
        if not self.visit_changed_only:
            super().application_checker()
            return
        everything = self.connections
        due = {p: everything[p] for p in self._settling if p in everything}
        visited = list(due)
        self._settling = set()
        # Daphne's check, shown only the connections due: it deletes from
        # the dict it sees what it is done with, and reschedules itself.
        self.connections = due
        try:
            super().application_checker()
        finally:
            self.connections = everything
        for protocol in visited:
            if protocol not in due:
                del everything[protocol]
                # Closed and its application finished: free it by reference
                # counting (release_websocket above).
                release_websocket(protocol)
        # Still running after its socket went: visited again until Daphne
        # reaps it, or cancels it after application_close_timeout.
        self._settling.update(p for p, d in due.items() if d.get("disconnected"))

    def timeout_checker(self) -> None:
        if not self.visit_changed_only or self._walk_every_socket():
            super().timeout_checker()
            return
        for protocol in list(self._opening):
            if protocol not in self.connections:
                self._opening.discard(protocol)
                continue
            protocol.check_timeouts()
            if (
                isinstance(protocol, WebSocketProtocol)
                and protocol.state != protocol.STATE_CONNECTING
            ):
                self._opening.discard(protocol)
        reactor.callLater(2, self.timeout_checker)  # type: ignore[attr-defined]


def _check_checkers() -> list[str]:
    return members(
        Server,
        {
            "application_checker": (),
            "timeout_checker": (),
            "protocol_connected": ("protocol",),
            "protocol_disconnected": ("protocol",),
            "create_application": ("protocol", "scope"),
        },
    ) + members(WebSocketProtocol, {"check_timeouts": (), "STATE_CONNECTING": None})


def _apply_checkers() -> None:
    ChangedConnectionsChecker.visit_changed_only = True


def _check_direct_writes() -> list[str]:
    return members(Server, {"handle_reply": ("protocol", "message")}) + members(
        WebSocketProtocol,
        {
            "sendMessage": (
                "payload",
                "isBinary",
                "fragmentSize",
                "sync",
                "doNotCompress",
            ),
            "STATE_OPEN": None,
        },
    )


def _apply_direct_writes() -> None:
    directwrite.enable(Server.handle_reply, WebSocketProtocol)


class SocketInputQueue:
    """A WebSocket application's input queue: what Daphne uses of
    asyncio.Queue (put_nowait, and get for the application's `receive`).

    An asyncio.Queue holds three deques and an Event with a fourth, about
    3.7 KB per idle socket of a server's 20 (docs/benchmarks.md, the memory
    census). Here: a list while frames wait, none while idle, and the one
    reader's future while it waits. `get` returns that future, not a
    coroutine: an idle socket's `receive` holds no coroutine of its own.
    ASGI reads `receive` one call at a time; a second concurrent reader is
    refused.
    """

    __slots__ = ("_items", "_head", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._head = 0
        self._waiter: asyncio.Future[Any] | None = None

    def put_nowait(self, item: Any) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # a cancelled read leaves it for the next
                waiter.set_result(item)
                return
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)

    def get(self) -> "asyncio.Future[Any]":
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._items is not None:
            future.set_result(self._pop())
            return future
        if self._waiter is not None and not self._waiter.done():
            raise RuntimeError("one reader at a time on a socket's input")
        self._waiter = future
        return future

    def _pop(self) -> Any:
        items = self._items
        assert items is not None
        head = self._head
        item = items[head]
        head += 1
        if head == len(items):
            self._items, head = None, 0
        elif head >= 64 and head * 2 >= len(items):
            del items[:head]  # a long backlog: drop what was read
            head = 0
        self._head = head
        return item

    def qsize(self) -> int:
        return 0 if self._items is None else len(self._items) - self._head

    def empty(self) -> bool:
        return self._items is None


_create_application = Server.create_application


def _create_application_slim(self: Server, protocol: Any, scope: dict[str, Any]) -> Any:
    """Daphne's create_application with SocketInputQueue for WebSockets.

    Daphne 4.2.3's own code, but for the queue class; HTTP requests keep
    asyncio.Queue (Django reads the body and listens for a disconnect).
    """
    if scope.get("type") != "websocket":
        return _create_application(self, protocol, scope)
    assert "application_instance" not in self.connections[protocol]
    input_queue = SocketInputQueue()
    scope.setdefault("asgi", {"version": "3.0"})
    application_instance = self.application(
        scope=scope,
        receive=input_queue.get,
        send=partial(self.handle_reply, protocol),
    )
    if protocol not in self.connections:
        return None
    self.connections[protocol]["application_instance"] = asyncio.ensure_future(
        application_instance,
        loop=asyncio.get_event_loop(),
    )
    return input_queue


def _check_slim_queue() -> list[str]:
    problems = members(Server, {"create_application": ("protocol", "scope")})
    source = inspect.getsource(_create_application)
    for line in (
        "input_queue = asyncio.Queue()",
        "receive=input_queue.get,",
        "send=partial(self.handle_reply, protocol),",
        'self.connections[protocol]["application_instance"] = asyncio.ensure_future(',
    ):
        if line not in source:
            problems.append(f"daphne.server.Server.create_application: no {line!r}")
    return problems


def _apply_slim_queue() -> None:
    Server.create_application = _create_application_slim  # type: ignore[method-assign]


def _check_drain() -> list[str]:
    """What devices.server's DrainingServer relies on: no patch, a subclass."""
    problems = members(
        Server, {"listen_success": ("port",), "stop": (), "kill_all_applications": ()}
    )
    init = inspect.signature(Server.__init__).parameters
    if "signal_handlers" not in init:
        problems.append("daphne.server.Server.__init__ takes no signal_handlers")
    return problems


def _nothing_to_apply() -> None:
    pass


PATCHES = [
    Patch("daphne-drain", LIBRARY, _check_drain, _nothing_to_apply, required=True),
    Patch(
        "daphne-server-close-codes",
        LIBRARY,
        _check_server_close,
        _apply_server_close,
        required=True,
    ),
    Patch("daphne-trim-open-sockets", LIBRARY, _check_trim, _apply_trim),
    Patch("daphne-release-upgraded-requests", LIBRARY, _check_release, _apply_release),
    Patch(
        "daphne-changed-connections-checks", LIBRARY, _check_checkers, _apply_checkers
    ),
    Patch("daphne-socket-input-queue", LIBRARY, _check_slim_queue, _apply_slim_queue),
    Patch(
        "daphne-direct-websocket-writes",
        LIBRARY,
        _check_direct_writes,
        _apply_direct_writes,
    ),
]
