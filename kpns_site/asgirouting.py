"""ASGI routing that keeps no coroutine or scope copy of its own.

Channels' ProtocolTypeRouter, URLRouter and `as_asgi()` each await the
next application, so every open device socket kept three coroutines of
theirs for its whole life, plus URLRouter's copy of the scope with its
`url_route` dicts: 1.9 KB of an idle socket's 15.6 (docs/benchmarks.md,
"Idle memory after churn"). Here routing is a plain call that returns the
consumer's own coroutine, which the server runs as the connection's task.
Socket paths are fixed (no parameters), so a dict look-up replaces the
patterns.
"""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Application = Callable[..., Awaitable[None]]


class DirectRouter:
    # asgiref takes a callable whose __call__ is not `async def` for an
    # ASGI 2 (double) callable unless told otherwise.
    _asgi_single_callable = True

    def __init__(self, *, http: Application, sockets: Mapping[str, type]) -> None:
        self.http = http
        self.sockets = {"/" + path.lstrip("/"): cls for path, cls in sockets.items()}

    def __call__(
        self, scope: dict[str, Any], receive: Any, send: Any
    ) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "http":
            return self.http(scope, receive, send)
        if kind != "websocket":
            return _fail(f"No application configured for scope type {kind!r}")
        consumer = self.sockets.get(_path(scope))
        if consumer is None:
            return _refuse(receive, send)
        return consumer()(scope, receive, send)  # type: ignore[no-any-return]


def _path(scope: dict[str, Any]) -> str | None:
    path = scope.get("path")
    root_path = scope.get("root_path", "")
    if path is None or not path.startswith(root_path):
        return None
    return "/" + path[len(root_path) :].lstrip("/")


async def _refuse(receive: Any, send: Any) -> None:
    # A socket to no device path: closed before accept, which Daphne
    # answers with 403 (a client's mistake, not the server's 500).
    await receive()  # websocket.connect
    await send({"type": "websocket.close"})


async def _fail(problem: str) -> None:
    # Raised in the connection's task, as Channels' routers do: the server
    # logs it and closes the socket.
    raise ValueError(problem)
