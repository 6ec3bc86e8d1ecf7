"""devices.server.memtrim: glibc's free pages returned after a burst of
sockets has settled, not during it and not for a few sockets."""

import asyncio
import sys
import threading

import pytest

from devices.server import memtrim


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc_trim")
def test_trim_calls_glibc():
    assert memtrim.trim() is True


async def test_trims_once_a_burst_has_settled(monkeypatch):
    monkeypatch.setattr(memtrim, "SETTLED_SECONDS", 0.01)
    trimmed = threading.Event()
    calls: list[int] = []
    counter = {"changes": 0}

    def recording_trim() -> bool:
        calls.append(counter["changes"])
        trimmed.set()
        return True

    monkeypatch.setattr(memtrim, "trim", recording_trim)
    monkeypatch.setattr(memtrim, "_malloc_trim", lambda: abs)
    loop_task = asyncio.ensure_future(memtrim.run(lambda: counter["changes"]))
    try:
        # A few sockets: never worth a trim.
        counter["changes"] = memtrim.MIN_CHANGES - 1
        for _ in range(5):
            await asyncio.sleep(0.02)
        assert calls == []
        # A burst that keeps changing is not trimmed until it stops.
        for step in range(1, 6):
            counter["changes"] += memtrim.MIN_CHANGES * step
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, trimmed.wait, 5)
        assert calls == [counter["changes"]]
    finally:
        loop_task.cancel()
