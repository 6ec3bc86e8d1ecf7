"""Socket writes sent at once when nothing is waiting to be sent.

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
"""

from typing import Any

from twisted.internet import tcp

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


def install() -> None:
    tcp.Connection.write = _write_now  # type: ignore[method-assign]
