"""Group commit: concurrent pushes of one process share one transaction.

A push request checks its input and builds its message in its own thread
(a bad request never reaches the group), then joins the process's group.
The first to arrive leads: it waits until every push request already in
this process has joined, at most KPNS_PUSH_GROUP_WAIT_SECONDS and
KPNS_PUSH_GROUP_MAX pushes, then writes them all in one transaction
(devices.delivery.pushes.push_batch: one message INSERT, one seq UPDATE
and one delivery INSERT per app) and sends one wake-up per node after the
commit. Each request is answered only after that commit. Requests that
arrive while a group is being written form the next group, written as soon
as that one is done: under load groups grow instead of every request
committing on its own.

A lone request waits for nobody (no other push request is in flight), so
one sender's pushes one after another pay no window. If a group's
transaction fails, each of its pushes is written again on its own, so one
push's failure is its own (docs/architecture.md, "Group commit").
"""

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from devices.conf import kpns_setting
from devices.delivery import pushes
from devices.models import App, Message

# A follower waits at most this long for its leader (who writes within
# the database's own timeouts): then it gets an error, never a false 202.
FOLLOWER_TIMEOUT = 60.0
# Groups of one process written at once. One: the next group waits for the
# one being written and gathers meanwhile (a group is one statement, a few
# milliseconds; a lone request finds nothing in flight and never waits).
GROUPS_IN_FLIGHT = 1


@dataclass(eq=False)
class _Push:
    app: App
    message: Message
    device_ids: Sequence[UUID]
    done: bool = False
    targets: int = 0
    error: BaseException | None = None


class PushGroup:
    """The process's group of pushes waiting for their shared commit."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._waiting: list[_Push] = []
        self._leading = False
        # Push requests between entering the view and joining a group.
        self._arriving = 0
        # Groups being written now.
        self._writing = 0
        # Groups written and pushes in them (tests and metrics read these).
        self.groups = 0
        self.pushes = 0

    def arriving(self) -> "Arrival":
        """Context of one push request: counted from its start, so that a
        leader waits for requests still checking their input."""
        return Arrival(self)

    def send(self, *, app: App, message: Message, device_ids: Sequence[UUID]) -> int:
        """Write the built message to its devices, with whatever joins; return
        the targets count once committed (raises what its write raised)."""
        push = _Push(app, message, device_ids)
        deadline = time.monotonic() + FOLLOWER_TIMEOUT
        with self._lock:
            self._arriving -= 1
            self._waiting.append(push)
            self._lock.notify_all()
        while True:
            with self._lock:
                if push.done:
                    break
                lead = not self._leading and push in self._waiting
                if lead:
                    self._leading = True
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        if push in self._waiting:
                            self._waiting.remove(push)
                        raise TimeoutError("the push's group commit did not finish")
                    self._lock.wait(left)
            if lead:
                self._lead()
        if push.error is not None:
            raise push.error
        return push.targets

    def _lead(self) -> None:
        limit = int(kpns_setting("PUSH_GROUP_MAX"))
        deadline = time.monotonic() + float(kpns_setting("PUSH_GROUP_WAIT_SECONDS"))
        with self._lock:
            # While a group is being written the next one gathers whatever
            # arrives: under load the groups grow instead of each request
            # committing on its own (measured: most groups were of one).
            while self._writing >= GROUPS_IN_FLIGHT or (
                self._arriving > 0
                and len(self._waiting) < limit
                and time.monotonic() < deadline
            ):
                if self._writing >= GROUPS_IN_FLIGHT:
                    self._lock.wait()
                else:
                    self._lock.wait(max(0.0, deadline - time.monotonic()))
            group, self._waiting = self._waiting[:limit], self._waiting[limit:]
            self._writing += 1
            # The next arrival (or one left over) leads the next group,
            # gathering while this one commits.
            self._leading = False
            self._lock.notify_all()
        try:
            _write(group)
        finally:
            with self._lock:
                self._writing -= 1
                self.groups += 1
                self.pushes += len(group)
                for push in group:
                    push.done = True
                self._lock.notify_all()


class Arrival:
    """One push request, from before its checks until it joins a group."""

    def __init__(self, group: PushGroup) -> None:
        self.group = group
        self.joined = False

    def __enter__(self) -> "Arrival":
        with self.group._lock:
            self.group._arriving += 1
        return self

    def __exit__(self, *exc: object) -> None:
        # A request that failed its checks never joined: stop counting it.
        if not self.joined:
            with self.group._lock:
                self.group._arriving -= 1
                self.group._lock.notify_all()

    def send(self, *, app: App, message: Message, device_ids: Sequence[UUID]) -> int:
        self.joined = True
        return self.group.send(app=app, message=message, device_ids=device_ids)


def _write(group: list[_Push]) -> None:
    """One transaction for the group; on failure, each push on its own."""
    try:
        counts = pushes.push_batch_apps(
            [(p.app, p.message, list(p.device_ids)) for p in group]
        )
    except Exception as exc:
        if len(group) == 1:
            group[0].error = exc
            return
        for push in group:
            _write_alone(push)
        return
    for push, count in zip(group, counts, strict=True):
        push.targets = count


def _write_alone(push: _Push) -> None:
    # Unsaved again: the rolled-back group INSERT marked it saved.
    push.message._state.adding = True
    try:
        (count,) = pushes.push_batch_apps(
            [(push.app, push.message, list(push.device_ids))]
        )
    except Exception as exc:
        push.error = exc
        return
    push.targets = count


_group = PushGroup()


def push_group() -> PushGroup:
    """This process's push group."""
    return _group


def enabled(using_transaction: bool) -> bool:
    """Group commit applies outside a caller's transaction (an Idempotency-Key
    request writes its push inside the record's transaction)."""
    return not using_transaction and float(kpns_setting("PUSH_GROUP_MAX")) > 1
