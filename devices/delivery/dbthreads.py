"""ORM calls from the socket path, on a small pool of worker threads.

Channels' database_sync_to_async runs every call in one thread per process,
so a connect storm waits on one database round trip at a time. Calls that
are independent per device (authentication, connect, catch-up) run here on a
few threads instead, each with its own reused connection.
"""

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import database_sync_to_async
from django.db import connections

DB_THREADS = 4
_executor: ThreadPoolExecutor | None = None


def db_parallel(func: Callable[..., Any]) -> Callable[..., Any]:
    """An async wrapper running `func` on the pool, closing stale connections."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="kpns-db")
    wrapped: Callable[..., Any] = database_sync_to_async(
        func, thread_sensitive=False, executor=_executor
    )
    return wrapped


# Threads of their own, by name, for node work that must not queue behind
# other ORM calls: each keeps one connection.
_dedicated: dict[str, ThreadPoolExecutor] = {}


def _own_thread(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    executor = _dedicated.get(name)
    if executor is None:
        executor = _dedicated[name] = ThreadPoolExecutor(1, thread_name_prefix=name)
    wrapped: Callable[..., Any] = database_sync_to_async(
        func, thread_sensitive=False, executor=executor
    )
    return wrapped


def db_heartbeat(func: Callable[..., Any]) -> Callable[..., Any]:
    """An async wrapper running `func` on a thread of its own.

    For the node's presence heartbeat: behind a slow sweep or receipt flush
    in Channels' one ORM thread, or behind a connect storm on the pool, it
    missed NODE_DEAD_AFTER_SECONDS and other nodes marked every device of
    a live process offline (100,000 sockets connecting on 2 cores).
    """
    return _own_thread("kpns-hb", func)


def db_receipts(func: Callable[..., Any]) -> Callable[..., Any]:
    """An async wrapper running `func` on the receipts' thread of its own.

    In Channels' one ORM thread a flush waited behind every other call
    queued there (a mass disconnect's presence updates, consumers that hop
    to the database per message): acks stayed unrecorded for as long.
    """
    return _own_thread("kpns-receipts", func)


def db_sweep(func: Callable[..., Any]) -> Callable[..., Any]:
    """An async wrapper running `func` on the sweep's thread of its own.

    In Channels' one ORM thread the sweep waited behind detaches and other
    calls and measured 1.2-1.9 s, which stretched its period.
    """
    return _own_thread("kpns-sweep", func)


async def settle(seconds: float) -> None:
    """Wait (at most `seconds`) until every thread finished its current call.

    Cancelling the task that awaits a thread does not stop the thread: a
    stopped node's sweep went on holding row locks, and a test database's
    TRUNCATE deadlocked with it. A no-op queued behind a thread's work
    completes only after that work; on the pool, one per thread meeting at
    a barrier, so that no thread takes two.
    """
    loop = asyncio.get_running_loop()
    waits = [loop.run_in_executor(ex, _nothing) for ex in _dedicated.values()]
    if _executor is not None:
        barrier = threading.Barrier(DB_THREADS)
        waits += [
            loop.run_in_executor(_executor, _meet, barrier, seconds)
            for _ in range(DB_THREADS)
        ]
    if waits:
        await asyncio.wait(waits, timeout=seconds)


def _nothing() -> None:
    return None


def _meet(barrier: threading.Barrier, timeout: float) -> None:
    try:
        barrier.wait(timeout=timeout)
    except threading.BrokenBarrierError:
        return


def shutdown() -> None:
    """Close every pool and dedicated thread's connection, then stop them."""
    global _executor
    for executor in _dedicated.values():
        executor.submit(connections.close_all).result(timeout=20)
        executor.shutdown(wait=True)
    _dedicated.clear()
    if _executor is None:
        return
    # One task per thread: each closes its own connection, then waits for
    # the others so that no thread takes two.
    barrier = threading.Barrier(DB_THREADS)

    def close_own() -> None:
        connections.close_all()
        barrier.wait(timeout=10)

    for future in [_executor.submit(close_own) for _ in range(DB_THREADS)]:
        future.result(timeout=20)
    _executor.shutdown(wait=True)
    _executor = None
