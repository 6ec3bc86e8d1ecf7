"""A node's sweep for deliveries whose wake-up was lost.

The channel layer is at-most-once (capacity, expiry, Redis restarts), so
every KPNS_SWEEP_SECONDS, start to start, a node asks the database for
pending deliveries of its sockets older than a second and hints their
sessions to catch up. Most sweeps are incremental: they read the deliveries
inserted since the previous sweeps (a primary key range), so their cost
follows the rate of new deliveries, not the sockets held or the backlog of
offline devices. Every KPNS_SWEEP_FULL_SECONDS a full sweep probes every
session instead (docs/architecture.md, "Lost wake-ups").
"""

import asyncio
import time
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery import recovery
from devices.delivery.dbthreads import db_sweep

if TYPE_CHECKING:
    from devices.delivery.node import Node

DB_TIMEOUT = 10.0
SWEEP_LIMIT = 20_000
# Incremental sweeps look at deliveries inserted since this long before the
# previous sweep. A transaction that commits later than this after writing
# its rows, and whose wake-up is lost too, waits for the next full sweep
# (KPNS_SWEEP_FULL_SECONDS); enqueue transactions take milliseconds.
SWEEP_OVERLAP_SECONDS = 5.0


class Sweeper:
    def __init__(self, node: "Node") -> None:
        self.node = node
        # (monotonic time, highest delivery id) at recent sweeps.
        self._marks: deque[tuple[float, int]] = deque()
        self._last_full = float("-inf")
        # When the last sweep finished and how long it took (metrics).
        self.finished: float | None = None
        self.seconds = 0.0

    async def run(self) -> None:
        """Sweep every KPNS_SWEEP_SECONDS, start to start.

        A sweep that overruns its period is followed by the next at once,
        never by a longer pause: the period is the recovery bound.
        """
        next_at = time.monotonic()
        while True:
            next_at += kpns_setting("SWEEP_SECONDS")
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = time.monotonic()
                await asyncio.sleep(0)
            await self.sweep()

    async def sweep(self) -> None:
        """Catch up sessions whose pending deliveries no wake-up announced."""
        started = time.monotonic()
        sessions = self.node.sessions
        full = started - self._last_full >= kpns_setting("SWEEP_FULL_SECONDS")
        lowest, full = await asyncio.wait_for(
            db_sweep(self._query)(full, list(sessions)), DB_TIMEOUT
        )
        if full:
            self._last_full = started
        for device_id, seq in lowest.items():
            session = sessions.get(device_id)
            if session is not None:
                session.hint_pending(seq)
        self.finished = time.monotonic()
        self.seconds = self.finished - started

    def _query(self, full: bool, sessions: list[UUID]) -> tuple[dict[UUID, int], bool]:
        """The sweep's queries, on the sweep's own thread; (found, was full)."""
        now = time.monotonic()
        older_than = timezone.now() - timedelta(seconds=1)
        marks = self._marks
        marks.append((now, recovery.delivery_id_high_water()))
        # The floor is the newest mark at least the overlap old; until one
        # is (a node's first seconds), every sweep is a full one.
        while len(marks) > 1 and marks[1][0] <= now - SWEEP_OVERLAP_SECONDS:
            marks.popleft()
        if full or marks[0][0] > now - SWEEP_OVERLAP_SECONDS:
            if not sessions:
                return {}, True
            found = recovery.pending_for_devices(
                device_ids=sessions, older_than=older_than, limit=SWEEP_LIMIT
            )
            return found, True
        found = recovery.pending_on_node_since(
            node=self.node.name,
            after_id=marks[0][1],
            older_than=older_than,
            limit=SWEEP_LIMIT,
        )
        return found, False
