"""One long-lived event loop per process for channel-layer calls from sync code.

`async_to_sync` called from a thread without an event loop (a gunicorn
worker thread, docs/operations.md) runs each call in a new thread on a new
event loop, and channels-redis keeps a connection pool per event loop:
every API push opened, used and closed a Redis connection of its own. A
process that serves the API without holding sockets (kpns_site/wsgi.py)
runs its wake-ups here instead: one loop, one pool, reused by every
request of every thread of the process.

Only devices/delivery.py uses it (the one door to the layer). A process
with nodes (Daphne) never does: its wake-ups must run on the loop of its
nodes, where an event for a local node is handed over without Redis.
"""

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid = 0


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop, _pid
    with _lock:
        # After a fork (gunicorn's workers) the parent's thread is gone.
        if _loop is None or _pid != os.getpid():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=run, name="kpns-layer-loop", daemon=True).start()
            if not started.wait(10):
                raise RuntimeError("the layer loop thread did not start")
            _loop, _pid = loop, os.getpid()
        return _loop


# Sends started and not finished (submit): past it a caller waits for a
# slot, so a Redis that stops answering slows requests down rather than
# piling up coroutines (each send is bounded by its own timeout).
MAX_IN_FLIGHT = 1000
_in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)


def submit(coroutine: Coroutine[Any, Any, Any], timeout: float) -> bool:
    """Start ``coroutine`` on the layer loop without waiting for it; False
    (and not started) if no slot freed up within ``timeout``."""
    if not _in_flight.acquire(timeout=timeout):
        coroutine.close()
        return False
    future = asyncio.run_coroutine_threadsafe(coroutine, _running_loop())
    future.add_done_callback(lambda _f: _in_flight.release())
    return True


def run(coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run ``coroutine`` on the process's layer loop; wait at most ``timeout``."""
    future = asyncio.run_coroutine_threadsafe(coroutine, _running_loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise
