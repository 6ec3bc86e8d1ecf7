"""Pushes written to Daphne's WebSocket protocol directly, once the patch
`daphne-direct-websocket-writes` (devices/patches/daphne.py) is installed.

Its own module without library imports: the consumer asks for a writer in
every process, and importing Daphne installs Twisted's reactor.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

_daphne: dict[str, Any] = {}


def enable(handle_reply: Any, protocol_class: type) -> None:
    _daphne.update(handle_reply=handle_reply, protocol_class=protocol_class)


def websocket_writer(send: Any) -> Callable[[str | bytes], bool] | None:
    """A function writing one WebSocket message to the socket behind an ASGI
    `send` of Daphne's, or None (another server, or the patch is off).

    Daphne's `send` is a coroutine that checks the connection, builds and
    dispatches an event dict, and logs at debug level before autobahn's
    `sendMessage`: 3-4% of a broadcast's samples on top of the write
    itself (docs/benchmarks.md). The writer does the same checks in the
    same order: nothing for a connection Daphne has forgotten or seen
    disconnect; False (autobahn's Disconnected) once the socket is no
    longer open; otherwise the message is written (text as UTF-8).
    """
    if not _daphne or not isinstance(send, partial) or len(send.args) != 1:
        return None
    method, protocol = send.func, send.args[0]
    if getattr(method, "__func__", None) is not _daphne["handle_reply"]:
        return None
    if not isinstance(protocol, _daphne["protocol_class"]):
        return None
    server = method.__self__  # its `connections` dict is replaced at times
    open_state = protocol.STATE_OPEN

    def write(data: str | bytes) -> bool:
        details = server.connections.get(protocol)
        if details is None or details.get("disconnected"):
            return True  # Daphne drops it silently
        if protocol.state != open_state:
            return False
        if isinstance(data, str):
            protocol.sendMessage(data.encode(), False)
        else:
            protocol.sendMessage(data, True)
        return True

    return write
