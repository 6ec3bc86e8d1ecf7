"""Daphne's periodic checks, visiting only the connections that need one.

Daphne walks every connection every second (`application_checker`: reap
finished application instances, cancel those that outlive their socket)
and every two seconds (`timeout_checker`: handshake timeouts, protocol
pings, socket age). At 12,000 sockets per process these walks took 21% of
a server's samples while 100,000 sockets connected, and they are most of
an idle server's CPU (docs/benchmarks.md). Here the server remembers which
connections can need a visit:

* application checks: a connection that disconnected, or whose application
  instance finished (a done callback), and nothing else;
* timeout checks: HTTP requests and WebSocket handshakes. An open socket
  needs none unless protocol pings or a socket age limit are on; then
  Daphne's own walk over every connection runs.

What a visit does is Daphne's own code, run on the connections due.
"""

import math
from typing import Any

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor

from devices import cycles

# The ping_interval that turns Daphne's protocol pings off.
NO_PINGS = math.inf


class ChangedConnectionsChecker(Server):
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
        self._opening.add(protocol)

    def protocol_disconnected(self, protocol: Any) -> None:
        super().protocol_disconnected(protocol)
        self._settling.add(protocol)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        queue = super().create_application(protocol, scope)
        details = self.connections.get(protocol)
        instance = details.get("application_instance") if details else None
        if instance is not None:
            instance.add_done_callback(lambda _done: self._settling.add(protocol))
        return queue

    def application_checker(self) -> None:
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
                # counting (devices.cycles).
                cycles.release_websocket(protocol)
        # Still running after its socket went: visited again until Daphne
        # reaps it, or cancels it after application_close_timeout.
        self._settling.update(p for p, d in due.items() if d.get("disconnected"))

    def timeout_checker(self) -> None:
        if self._walk_every_socket():
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
        reactor.callLater(2, self.timeout_checker)
