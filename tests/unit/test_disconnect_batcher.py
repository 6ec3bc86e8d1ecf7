"""connects.DisconnectBatcher: closed sockets' presence writes, batched,
each socket waiting on a bare future of its batch."""

import asyncio
import uuid

import pytest

from devices.delivery import connects, resume

# The thread wrapper closes stale connections before each call.
pytestmark = pytest.mark.django_db


async def test_one_write_for_a_batch_ends_every_wait(monkeypatch):
    written: list[list[tuple[uuid.UUID, str]]] = []
    monkeypatch.setattr(
        resume, "devices_disconnect", lambda pairs, closed_badly: written.append(pairs)
    )
    batcher = connects.DisconnectBatcher()
    pairs = [(uuid.uuid4(), f"c{n}") for n in range(5)]
    waits = [batcher.disconnect(device, conn, wait=30) for device, conn in pairs]
    assert all(isinstance(w, asyncio.Future) and not w.done() for w in waits)
    await asyncio.wait_for(asyncio.gather(*waits), 10)
    assert written == [pairs]


async def test_a_failed_write_reaches_every_wait(monkeypatch):
    def failing(pairs, closed_badly):
        raise RuntimeError("database gone")

    monkeypatch.setattr(resume, "devices_disconnect", failing)
    batcher = connects.DisconnectBatcher()
    waits = [batcher.disconnect(uuid.uuid4(), "c", wait=30) for _ in range(3)]
    for wait in waits:
        with pytest.raises(RuntimeError, match="database gone"):
            await asyncio.wait_for(wait, 10)


async def test_a_cancelled_wait_leaves_the_others_and_the_write(monkeypatch):
    written: list[list[tuple[uuid.UUID, str]]] = []
    monkeypatch.setattr(
        resume, "devices_disconnect", lambda pairs, closed_badly: written.append(pairs)
    )
    batcher = connects.DisconnectBatcher()
    first = batcher.disconnect(uuid.uuid4(), "a", wait=30)
    second = batcher.disconnect(uuid.uuid4(), "b", wait=30)
    first.cancel()
    await asyncio.wait_for(second, 10)
    assert second.result() is None
    assert [conn for _, conn in written[0]] == ["a", "b"]
