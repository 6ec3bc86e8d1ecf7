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
only kpns_serve imports it, after devices.patches.install(server=True) (the
1012 close code is one of those patches).
"""

import asyncio
import logging
import signal
import time
from typing import Any

from twisted.internet import reactor

from devices.delivery import drain, metrics, node
from devices.patches.daphne import ChangedConnectionsChecker
from devices.server import memtrim

logger = logging.getLogger(__name__)


async def _start_node() -> None:
    this = node.get_node()
    await this.ensure_started()
    # Free memory back to the system after bursts of sockets.
    await memtrim.run(lambda: this.socket_changes)


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
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signalled)
        # The node starts with the process, not with its first socket: its
        # Node row shows in the admin (and heartbeats) while it is idle too.
        reactor.callWhenRunning(lambda: asyncio.ensure_future(_start_node()))
        super().run()

    def _signalled(self, sig: int, frame: Any) -> None:
        # Python runs this between two bytecodes of the main thread (a wait
        # for events is interrupted): hand the signal to the reactor's loop,
        # which runs it on its next turn, or once it starts.
        reactor.callFromThread(self.on_signal, sig)  # type: ignore[attr-defined]

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
            await drain.wait_until(lambda: not self._requests_running(), deadline)
        except Exception:
            logger.exception("drain failed; stopping anyway")
        finally:
            logger.info(
                "server stopped after %.2f s of drain", time.monotonic() - started
            )
            metrics.process_exited()
            self.stop()

    def kill_all_applications(self) -> Any:
        # Daphne's shutdown trigger reads details["application_instance"]
        # of every connection: one accepted but never handed to the
        # application (a port check's bare TCP connect), or whose finished
        # application was reaped while its socket closes, raised KeyError
        # and left a traceback at every drain (tests/ops/test_drain.py).
        self.connections = {
            protocol: details
            for protocol, details in self.connections.items()
            if "application_instance" in details
        }
        return super().kill_all_applications()

    def _requests_running(self) -> bool:
        for details in list(getattr(self, "connections", {}).values()):
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                return True
        return False
