"""autobahn-send-queue-on-first-use: autobahn's queued writes (chopped or
synchronous) still go out in order, through a deque made on first use (the
server test shows no open socket holding one)."""

from collections import deque
from types import SimpleNamespace

import pytest
from daphne.ws_protocol import WebSocketProtocol

from devices.patches import autobahn


@pytest.fixture(autouse=True)
def installed(monkeypatch):
    assert autobahn._check_send_queue() == []
    monkeypatch.setattr(WebSocketProtocol, "send_queue", None, raising=False)
    monkeypatch.setattr(WebSocketProtocol, "sendData", WebSocketProtocol.sendData)
    autobahn._apply_send_queue()


class Transport:
    def __init__(self):
        self.written = []

    def write(self, data):
        self.written.append(data)


def protocol():
    """An open socket's protocol with what sendData and _send read."""
    p = WebSocketProtocol.__new__(WebSocketProtocol)
    p.transport = Transport()
    p.state = WebSocketProtocol.STATE_OPEN
    p.triggered = False
    p.peer = "tcp:127.0.0.1:1"
    p.logOctets = False
    p.trafficStats = SimpleNamespace(outgoingOctetsWireLevel=0)
    p.send_queue = deque()  # as autobahn's _connectionMade does
    return p


def test_a_socket_holds_no_deque_until_a_queued_write():
    p = protocol()
    assert p.send_queue == () and len(p.send_queue) == 0
    p.sendData(b"direct")
    assert p.transport.written == [b"direct"]
    assert "_kpns_send_queue" not in vars(p)


def test_chopped_writes_are_queued_and_sent_in_order(monkeypatch):
    later = []
    monkeypatch.setattr("txaio.call_later", lambda delay, fn, *a: later.append((fn, a)))
    p = protocol()
    p.sendData(b"abcdef", chopsize=2)
    assert isinstance(p.send_queue, deque)
    while later:
        fn, args = later.pop(0)
        fn(*args)
    assert p.transport.written == [b"ab", b"cd", b"ef"]
    assert len(p.send_queue) == 0 and not p.triggered
