"""autobahn: debug-log arguments and per-message events nobody observes,
small whole frames read without the general frame parser.

Written for autobahn 26.11.1 (WRITTEN_FOR); every patch is an optimisation.
"""

import inspect
from collections import deque
from typing import Any

import autobahn.twisted.websocket as autobahn_twisted
import autobahn.websocket.protocol as autobahn_protocol
from daphne.ws_protocol import WebSocketProtocol

from devices.patches.guard import Library, Patch, member_problem, members

LIBRARY = Library("autobahn", frozenset({"26.11.1"}))


def _unstyled(value: object, *args: object, **kwargs: object) -> str:
    return ""


# autobahn builds the arguments of its debug log lines even with debug off:
# hltype()/hlval() (type names coloured with click, when installed) for
# every frame written cost 4.7% of a 20,000-device broadcast's samples
# (docs/benchmarks.md). Only those never-shown debug lines call them.
# Its Twisted adapter does the same for every read (dataReceived): 6% more.
# The same for the pretty-printed list of ~40 protocol options it logs at
# debug level for every new connection (pformat): 2.5-10% of a server's
# samples while 100,000 sockets connected. (Its other use, printing
# timings, is for protocols that track timings; Daphne's do not.)
def _check_unstyled() -> list[str]:
    found = [
        member_problem(autobahn_protocol, "hltype"),
        member_problem(autobahn_protocol, "hlval"),
        member_problem(autobahn_protocol, "pformat"),
        member_problem(autobahn_twisted, "hltype"),
        member_problem(autobahn_twisted, "hlval"),
    ]
    return [problem for problem in found if problem]


def _apply_unstyled() -> None:
    for module in (autobahn_protocol, autobahn_twisted):
        module.hltype = _unstyled  # type: ignore[attr-defined]
        module.hlval = _unstyled  # type: ignore[attr-defined]
    autobahn_protocol.pformat = _unstyled  # type: ignore[attr-defined]


_on_message_end = autobahn_protocol.WebSocketProtocol.onMessageEnd


def _message_end_unobserved(self: Any) -> None:
    """A whole message read: hand it to Daphne, and stop there when nothing
    observes the socket's events.

    After onMessage autobahn fires a "message" event for observers; with
    none (Daphne registers none) it still makes a fired Deferred and adds
    an errback to it for every frame a device sends: 7% of a broadcast's
    samples went to that (docs/benchmarks.md). With observers, or while
    failing or timing, autobahn's own method runs.
    """
    if self._listeners is not None or self.failedByMe or self.trackedTimings:
        _on_message_end(self)
        return
    payload = b"".join(self.message_data)
    self.message_data = None
    self._onMessage(payload, self.message_is_binary)


def _check_message_end() -> list[str]:
    return members(
        WebSocketProtocol,
        {
            "onMessageEnd": (),
            "_onMessage": ("payload", "isBinary"),
            "_listeners": None,
            "fire": ("event", "args", "kwargs"),
        },
    )


def _apply_message_end() -> None:
    WebSocketProtocol.onMessageEnd = _message_end_unobserved  # type: ignore[method-assign]


_STATE_OPEN = autobahn_protocol.WebSocketProtocol.STATE_OPEN
_data_received = autobahn_protocol.WebSocketProtocol._dataReceived
# A final (FIN) text or binary frame, no RSV bits, then a masked length
# under 126: the whole header of a device's ack or ping is 6 bytes.
_TEXT, _BINARY = 0x81, 0x82
_MASKED_SMALL = range(0x80, 0x80 + 126)


def small_messages(data: bytes) -> list[tuple[bytes, bool]] | None:
    """The messages of `data` if it is only whole, small, masked, final text
    or binary frames with valid UTF-8 text; None for anything else.

    Per RFC 6455 section 5: FIN set, RSV clear, opcode 1 or 2, MASK set,
    a 7-bit length, the 4-byte key, the payload XORed with the key.
    """
    messages = []
    end_of_data = len(data)
    at = 0
    while at < end_of_data:
        if end_of_data - at < 6:
            return None
        first, second = data[at], data[at + 1]
        if (first != _TEXT and first != _BINARY) or second not in _MASKED_SMALL:
            return None
        length = second & 0x7F
        start = at + 6
        end = start + length
        if end > end_of_data:
            return None
        key = int.from_bytes((data[at + 2 : start] * (length // 4 + 1))[:length])
        payload = (int.from_bytes(data[start:end]) ^ key).to_bytes(length)
        if first == _TEXT:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                return None  # autobahn's parser fails the connection (1007)
        messages.append((payload, first == _BINARY))
        at = end
    return messages


def _small_frames_first(self: Any, data: bytes) -> None:
    """Bytes read from a device: whole small frames handed on at once.

    A device's acks are 40-90 byte text frames that arrive whole. autobahn
    parses each one in a dozen Python calls, with a masker object and an
    incremental UTF-8 validator per frame: about a quarter of a broadcast's
    samples (docs/benchmarks.md). Here a read made only of such frames, on
    an open socket between messages, goes straight to `_onMessage`, as
    autobahn's parser would end; anything else (a partial or larger frame,
    a control frame, a fragment, bad UTF-8, an unmasked frame, extensions,
    logging or timing) takes autobahn's own path, which also gives every
    protocol error its close code.
    """
    if (
        self.state != _STATE_OPEN
        or self.data
        or self.current_frame is not None
        or self.inside_message
        or self._perMessageCompress is not None
        or self.logOctets
        or self.logFrames
        or self.trackedTimings
        or 0 < self.maxFramePayloadSize < 126
        or 0 < self.maxMessagePayloadSize < 126
    ):
        _data_received(self, data)
        return
    messages = small_messages(data)
    if messages is None:
        _data_received(self, data)
        return
    self.trafficStats.incomingOctetsWireLevel += len(data)
    for payload, binary in messages:
        self._onMessage(payload, binary)


# Instance attributes the fast path reads: each must still be assigned in
# autobahn's protocol source (they are set per connection, not on a class).
_READ_ATTRIBUTES = (
    "state",
    "data",
    "current_frame",
    "inside_message",
    "_perMessageCompress",
    "logOctets",
    "logFrames",
    "trackedTimings",
    "maxFramePayloadSize",
    "maxMessagePayloadSize",
    "trafficStats",
)


def _check_small_frames() -> list[str]:
    source = inspect.getsource(autobahn_protocol)
    unassigned = [
        f"autobahn.websocket.protocol no longer assigns self.{name}"
        for name in _READ_ATTRIBUTES
        if f"self.{name} = " not in source and f'"{name}",' not in source
    ]
    return (
        unassigned
        + members(
            autobahn_protocol.WebSocketProtocol,
            {"_dataReceived": ("data",), "STATE_OPEN": None},
        )
        + members(WebSocketProtocol, {"_onMessage": ("payload", "isBinary")})
    )


def _apply_small_frames() -> None:
    WebSocketProtocol._dataReceived = _small_frames_first  # type: ignore[method-assign]


_server_connection_made = autobahn_protocol.WebSocketServerProtocol._connectionMade


def _options_on_a_class(self: Any) -> None:
    """A new connection: the factory's protocol options on a class, not on it.

    autobahn copies about 30 options of its factory into every protocol's
    attributes unless the protocol (or its class) has them already: with
    them, a Daphne socket's attribute dict held 99 entries and took 3.3 KB
    (a dict of 86 to 170 entries); without, 1.6 KB (docs/benchmarks.md,
    the memory census). The socket is given a subclass holding the
    factory's current values, made once per factory and made again if
    they change; values set on a protocol itself still win, as in
    autobahn.
    """
    cls = type(self)
    if not cls.__dict__.get("_kpns_factory_options", False):
        factory = self.factory
        names = self.CONFIG_ATTRS
        values = [getattr(factory, name) for name in names]
        made = factory.__dict__.get("_kpns_options_class")
        if made is None or made[0] is not cls or made[1] != values:
            # A function option (perMessageCompressionAccept) must not
            # become a method of the class.
            options = {
                name: staticmethod(value) if inspect.isfunction(value) else value
                for name, value in zip(names, values, strict=True)
            }
            shared = type(
                cls.__name__,
                (cls,),
                {
                    **options,
                    "_kpns_factory_options": True,
                    "__module__": cls.__module__,
                },
            )
            made = factory._kpns_options_class = (cls, values, shared)
        self.__class__ = made[2]
    _server_connection_made(self)


def _check_options_on_a_class() -> list[str]:
    problems = members(
        autobahn_protocol.WebSocketServerProtocol,
        {"_connectionMade": (), "CONFIG_ATTRS": None},
    )
    source = inspect.getsource(autobahn_protocol.WebSocketProtocol._connectionMade)
    if "if not hasattr(self, configAttr):" not in source:
        problems.append(
            "autobahn WebSocketProtocol._connectionMade no longer copies only "
            "the options a protocol lacks"
        )
    return problems


def _apply_options_on_a_class() -> None:
    WebSocketProtocol._connectionMade = _options_on_a_class  # type: ignore[method-assign]


# autobahn gives every connection a deque for writes it must queue (chopped
# or synchronous ones, which Daphne's sockets make only for close frames):
# an empty deque is 0.76 KB of an idle socket's 13 (docs/benchmarks.md,
# "Idle memory after churn"). Here the attribute reads as an empty tuple
# until a queued write needs a deque; autobahn only takes len() of it then.
_QUEUE = "_kpns_send_queue"


class _SendQueueOnFirstUse:
    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        queue = obj.__dict__.get(_QUEUE)
        return () if queue is None else queue

    def __set__(self, obj: Any, value: Any) -> None:
        if isinstance(value, deque) and not value:
            obj.__dict__.pop(_QUEUE, None)  # autobahn's empty one, at connect
        else:
            obj.__dict__[_QUEUE] = value


_send_data = autobahn_protocol.WebSocketProtocol.sendData


def _send_data_queue_on_first_use(
    self: Any, data: bytes, sync: bool = False, chopsize: int | None = None
) -> None:
    if (sync or (chopsize and chopsize > 0)) and _QUEUE not in self.__dict__:
        self.__dict__[_QUEUE] = deque()
    _send_data(self, data, sync, chopsize)


def _check_send_queue() -> list[str]:
    base = autobahn_protocol.WebSocketProtocol
    problems = members(base, {"sendData": ("data", "sync", "chopsize"), "_send": ()})
    for method, line in (
        (base._connectionMade, "self.send_queue = deque()"),
        (base._send, "if len(self.send_queue) > 0:"),
        (base._send, "e = self.send_queue.popleft()"),
        (base.sendData, "if sync or len(self.send_queue) > 0:"),
        (base.sendData, "self.send_queue.append((data[i:j], True))"),
    ):
        if line not in inspect.getsource(method):
            problems.append(f"autobahn {method.__qualname__}: no {line!r}")
    for name in ("send_queue", "sendData"):
        if name in vars(WebSocketProtocol):
            problems.append(f"daphne WebSocketProtocol defines {name} itself")
    return problems


def _apply_send_queue() -> None:
    WebSocketProtocol.send_queue = _SendQueueOnFirstUse()  # type: ignore[attr-defined]
    WebSocketProtocol.sendData = _send_data_queue_on_first_use  # type: ignore[method-assign]


PATCHES = [
    Patch("autobahn-unstyled-debug-args", LIBRARY, _check_unstyled, _apply_unstyled),
    Patch(
        "autobahn-unobserved-message-events",
        LIBRARY,
        _check_message_end,
        _apply_message_end,
    ),
    Patch(
        "autobahn-options-on-a-class",
        LIBRARY,
        _check_options_on_a_class,
        _apply_options_on_a_class,
    ),
    Patch(
        "autobahn-small-frames-fast-path",
        LIBRARY,
        _check_small_frames,
        _apply_small_frames,
    ),
    Patch(
        "autobahn-send-queue-on-first-use",
        LIBRARY,
        _check_send_queue,
        _apply_send_queue,
    ),
]
