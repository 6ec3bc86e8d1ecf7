"""autobahn: debug-log arguments and per-message events nobody observes.

Written for autobahn 26.11.1 (WRITTEN_FOR); both patches are optimisations.
"""

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


PATCHES = [
    Patch("autobahn-unstyled-debug-args", LIBRARY, _check_unstyled, _apply_unstyled),
    Patch(
        "autobahn-unobserved-message-events",
        LIBRARY,
        _check_message_end,
        _apply_message_end,
    ),
]
