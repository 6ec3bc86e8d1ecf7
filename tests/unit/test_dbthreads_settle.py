"""dbthreads.settle: a node's stop waits for the thread work it cancelled."""

import asyncio
import threading

import pytest

from devices.delivery import dbthreads

# The wrappers close stale connections before each call: database access.
pytestmark = pytest.mark.django_db


async def test_settle_waits_for_work_whose_task_was_cancelled():
    started, finished = threading.Event(), threading.Event()
    release = threading.Event()

    def slow_sweep() -> None:
        started.set()
        release.wait(5)
        finished.set()

    task = asyncio.ensure_future(dbthreads.db_sweep(slow_sweep)())
    assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    task.cancel()
    # The task is gone; its thread is still inside slow_sweep.
    assert not finished.is_set()
    threading.Timer(0.2, release.set).start()
    await dbthreads.settle(5)
    assert finished.is_set()


async def test_settle_waits_for_every_pool_thread():
    release = threading.Event()
    running = threading.Semaphore(0)
    done: list[int] = []

    def query(number: int) -> None:
        running.release()
        release.wait(5)
        done.append(number)

    tasks = [
        asyncio.ensure_future(dbthreads.db_parallel(query)(n))
        for n in range(dbthreads.DB_THREADS)
    ]
    loop = asyncio.get_running_loop()
    for _ in tasks:
        assert await loop.run_in_executor(None, running.acquire, True, 5)
    for task in tasks:
        task.cancel()
    threading.Timer(0.2, release.set).start()
    await dbthreads.settle(5)
    assert sorted(done) == list(range(dbthreads.DB_THREADS))
