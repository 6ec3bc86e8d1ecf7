"""daphne-socket-input-queue: the queue behind a WebSocket application's
`receive`, as Daphne and ASGI use it (the server test shows it installed)."""

import asyncio

import pytest

from devices.patches.daphne import SocketInputQueue


async def test_items_come_out_in_order_across_a_long_backlog():
    queue = SocketInputQueue()
    for n in range(300):
        queue.put_nowait(n)
    assert queue.qsize() == 300
    got = [await queue.get() for _ in range(250)]
    queue.put_nowait(300)
    got += [await queue.get() for _ in range(51)]
    assert got == list(range(301))
    assert queue.empty() and queue.qsize() == 0


async def test_a_waiting_reader_wakes_for_the_next_item():
    queue = SocketInputQueue()
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not reader.done()
    queue.put_nowait({"type": "websocket.receive", "text": "x"})
    assert await asyncio.wait_for(reader, 1) == {
        "type": "websocket.receive",
        "text": "x",
    }


async def test_a_cancelled_read_loses_nothing_and_frees_the_reader_slot():
    queue = SocketInputQueue()
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    queue.put_nowait("after")
    assert await asyncio.wait_for(queue.get(), 1) == "after"


async def test_a_second_concurrent_reader_is_refused():
    queue = SocketInputQueue()
    first = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one reader"):
        await queue.get()
    queue.put_nowait(1)
    assert await asyncio.wait_for(first, 1) == 1
