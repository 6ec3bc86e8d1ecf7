"""Twisted: socket writes sent at once when nothing is waiting to be sent.

Written for Twisted 26.10.0 (WRITTEN_FOR); an optimisation.

Twisted's TCP transport never writes in ``write()``: it buffers the bytes,
registers the socket with the event loop for writability, sends on the next
turn of the loop and unregisters it. For a push frame to an idle socket that
is two ``epoll_ctl`` calls, a loop turn and Twisted's selector bookkeeping
per frame, 12% of a broadcast's samples (docs/benchmarks.md). asyncio's own
transports try the send first; this does the same for plain TCP connections
with an empty buffer, and leaves everything else (TLS, a buffer not yet
drained, a paused producer, a closing connection, a send the kernel
refuses) to Twisted's buffered path, which then sees the same socket state.
Flow control is unchanged: a producer (Daphne's HTTP channel stays
registered on every upgraded socket) is paused when the buffer fills, and
a frame sent whole never reaches the buffer.

It replaces ``tcp.Connection.write`` for the whole process (every TCP
connection of the reactor) and reads seven of its private members.
"""

import inspect
from typing import Any

from twisted.internet import abstract, tcp

from devices.patches.guard import Library, Patch, members

LIBRARY = Library("twisted", frozenset({"26.10.0"}))

# What the fast path reads, besides writeSomeData; _tempDataBuffer is set
# per instance (FileDescriptor.__init__), the rest are class defaults.
STATE = ("TLS", "connected", "disconnecting", "_writeDisconnected")
STATE_TOO = ("producerPaused", "dataBuffer")

_buffered_write = tcp.Connection.write


def _write_now(self: Any, data: bytes) -> None:
    if (
        data
        and not self.TLS
        and self.connected
        and not self.disconnecting
        and not self._writeDisconnected
        and not self.producerPaused
        and not self.dataBuffer
        and not self._tempDataBuffer
    ):
        sent = self.writeSomeData(data)  # an int, or ConnectionLost (not raised)
        if isinstance(sent, int) and sent > 0:
            if sent == len(data):
                return
            data = data[sent:]
    _buffered_write(self, data)


def _check() -> list[str]:
    problems = members(
        tcp.Connection,
        {
            "write": ("bytes",),
            "writeSomeData": ("data",),
            **dict.fromkeys(STATE + STATE_TOO),
        },
    )
    init = inspect.getsource(abstract.FileDescriptor.__init__)
    if "_tempDataBuffer" not in init:
        problems.append(
            "twisted.internet.abstract.FileDescriptor.__init__ no longer sets "
            "_tempDataBuffer"
        )
    return problems


def _apply() -> None:
    tcp.Connection.write = _write_now  # type: ignore[method-assign]


PATCHES = [Patch("twisted-eager-tcp-write", LIBRARY, _check, _apply)]
