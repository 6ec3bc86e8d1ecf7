"""`manage.py kpns_serve` with counters on the library code KPNS patches.

Before the command installs the patches, the probe wraps, to count calls:
autobahn's debug-argument formatters (hltype, hlval, pformat), its "message"
event (ObservableMixin.fire), its frame parser (processData), Daphne's
`send` of WebSocket messages (Server.handle_reply), and Twisted's
registration of a socket for a buffered write (FileDescriptor.startWriting
on server connections). A patch that works keeps a counter still; with
KPNS_PATCHES=off they move.

On SIGUSR1 it writes a JSON report to KPNS_PATCH_REPORT: the counters, the
cyclic garbage a full collection finds, what the server tracks, how many
open sockets still hold their handshake, and the patches installed.

Run as a script by tests/patches/test_server_patches.py.
"""

import collections
import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
calls: collections.Counter[str] = collections.Counter()


def counting(name: str, original: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return original(*args, **kwargs)

    return wrapper


def wrap_library() -> None:
    import daphne.server  # noqa: F401  (installs the asyncio reactor first)

    # isort: split
    import autobahn.twisted.websocket as autobahn_twisted
    import autobahn.websocket.protocol as autobahn_protocol
    from autobahn.util import ObservableMixin
    from twisted.internet import abstract, tcp

    for module in (autobahn_protocol, autobahn_twisted):
        for name in ("hltype", "hlval"):
            setattr(module, name, counting(name, getattr(module, name)))
    autobahn_protocol.pformat = counting("pformat", autobahn_protocol.pformat)

    fire = ObservableMixin.fire

    def counted_fire(self: Any, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            calls["message_event"] += 1
        return fire(self, event, *args, **kwargs)

    ObservableMixin.fire = counted_fire  # type: ignore[method-assign]

    handle_reply = daphne.server.Server.handle_reply

    async def counted_handle_reply(self: Any, protocol: Any, message: Any) -> Any:
        if message.get("type") == "websocket.send":
            calls["daphne_send"] += 1
        return await handle_reply(self, protocol, message)

    daphne.server.Server.handle_reply = counted_handle_reply  # type: ignore[method-assign]

    process_data = autobahn_protocol.WebSocketProtocol.processData

    def counted_process_data(self: Any) -> Any:
        calls["process_data"] += 1
        return process_data(self)

    autobahn_protocol.WebSocketProtocol.processData = counted_process_data  # type: ignore[method-assign]

    start_writing = abstract.FileDescriptor.startWriting

    def counted_start_writing(self: Any) -> None:
        if isinstance(self, tcp.Server):
            calls["start_writing"] += 1
        start_writing(self)

    abstract.FileDescriptor.startWriting = counted_start_writing  # type: ignore[method-assign]


def _kept_handshake(protocol: Any) -> bool:
    request = getattr(protocol, "request", None)
    return bool(protocol.http_headers or (request is not None and request.headers))


def report(signum: int, frame: object) -> None:
    from daphne.ws_protocol import WebSocketProtocol
    from psycopg_pool.base import AttemptWithBackoff

    from devices import patches
    from devices.patches import prometheus_client

    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    gc.set_debug(0)
    garbage = len(gc.garbage)
    kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage)
    gc.garbage.clear()
    servers = [o for o in gc.get_objects() if type(o).__name__ == "DrainingServer"]
    (server,) = servers
    sockets = [
        p
        for p in server.connections
        if isinstance(p, WebSocketProtocol) and p.state == p.STATE_OPEN
    ]
    path = Path(os.environ["KPNS_PATCH_REPORT"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "calls": dict(calls),
                "garbage": garbage,
                "kinds": kinds.most_common(8),
                "connections": len(server.connections),
                "settling": len(server._settling),
                "opening": len(server._opening),
                "open_sockets": len(sockets),
                "kept_handshake": sum(_kept_handshake(p) for p in sockets),
                "copied_options": sum(
                    name in vars(p) for p in sockets for name in p.CONFIG_ATTRS
                ),
                "options": len(WebSocketProtocol.CONFIG_ATTRS),
                "send_queues": sum(
                    isinstance(p.send_queue, collections.deque) for p in sockets
                ),
                "input_queues": collections.Counter(
                    type(p.application_queue).__name__ for p in sockets
                ),
                "installed": patches.installed(),
                "delay_backoff": AttemptWithBackoff.DELAY_BACKOFF,
                "bulk_observe": prometheus_client.enabled,
            }
        )
    )
    tmp.replace(path)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    wrap_library()
    signal.signal(signal.SIGUSR1, report)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", "kpns_serve", *sys.argv[1:]])
