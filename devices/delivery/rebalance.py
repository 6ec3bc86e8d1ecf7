"""Sockets spread back over the server processes after a roll or a join.

nginx's least_conn places new connections only: after a rolling restart
every device sat on the process restarted last (251 + 249 before a roll,
500 + 0 after), and a process could only be rolled while the others had
room for all of its sockets. Each node therefore compares, at every
heartbeat, the sockets it holds with its fair share of the devices online
on the live, non-draining processes (presence in the database). Above its
share by more than KPNS_REBALANCE_SLACK on CONFIRMATIONS heartbeats in a
row, it closes the excess with 1012
(service restart), oldest connections first, at most
KPNS_REBALANCE_PER_SECOND a second: SDKs reconnect with jittered backoff
and nginx places them on the least loaded process. The next heartbeat
measures again, so nodes converge without shedding more than they must.
The design: docs/operations.md, "Rebalancing".
"""

import asyncio
import itertools
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery import presence
from devices.models import Node as NodeRow

if TYPE_CHECKING:
    from devices.delivery.node import Node

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.2
# Below this excess a node keeps its sockets: moving a handful of devices
# costs more (their reconnects) than an exact balance is worth.
MIN_EXCESS = 10
# The close code that sends a device elsewhere (docs/protocol.md).
CLOSE_SERVICE_RESTART = 1012
# A node counts as alive for the fair share while its last heartbeat is at
# most this many heartbeat periods old: a crashed node is not yet reaped
# for KPNS_NODE_DEAD_AFTER_SECONDS, and counting it (its devices gone to the
# others) made every survivor think it held too much and shed sockets.
ALIVE_PERIODS = 2
# Shed only after this many heartbeats in a row measured an excess: over
# that span (>= ALIVE_PERIODS periods) a crashed node has dropped out of the
# count, and a passing imbalance of a connect storm has settled.
CONFIRMATIONS = 3


def fair_excess(*, node: str, held: int) -> int:
    """How many sockets this node holds above its fair share (0 if none).

    Runs in the node's heartbeat thread. The other nodes' counts are their
    devices in presence, which a connect updates at once (a Node row's
    count is up to a heartbeat old).
    """
    slack = float(kpns_setting("REBALANCE_SLACK"))
    period = float(kpns_setting("NODE_HEARTBEAT_SECONDS"))
    alive_since = timezone.now() - timedelta(seconds=ALIVE_PERIODS * period)
    live = set(
        NodeRow.objects.filter(
            heartbeat_at__gte=alive_since, draining=False
        ).values_list("name", flat=True)
    )
    if node not in live or len(live) < 2:
        return 0
    counts = presence.online_by_node()
    total = held + sum(counts.get(name, 0) for name in live if name != node)
    fair = total / len(live)
    if held <= fair * (1 + slack) + MIN_EXCESS:
        return 0
    return int(held - fair)


class Rebalancer:
    """Closes a node's excess sockets at a bounded rate."""

    def __init__(self, node: "Node") -> None:
        self.node = node
        self.budget = 0
        self.streak = 0  # heartbeats in a row that measured an excess

    def plan(self, excess: int, window: float) -> None:
        """Shed up to `excess` sockets over the next `window` seconds, once
        CONFIRMATIONS heartbeats in a row have measured one."""
        self.streak = self.streak + 1 if excess > 0 else 0
        if self.streak < CONFIRMATIONS:
            self.budget = 0
            return
        rate = float(kpns_setting("REBALANCE_PER_SECOND"))
        self.budget = min(excess, int(rate * window))
        if self.budget:
            logger.info(
                "rebalancing: shedding %d sockets of %d",
                self.budget,
                len(self.node.sessions),
                extra={"event": "rebalance", "shed": self.budget},
            )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            if self.budget <= 0 or self.node.draining:
                continue
            rate = float(kpns_setting("REBALANCE_PER_SECOND"))
            count = min(self.budget, max(1, int(rate * TICK_SECONDS)))
            self.budget -= count
            ready = (
                s for s in self.node.sessions.values() if s.synced and not s.closed
            )
            for session in list(itertools.islice(ready, count)):
                await session.close(CLOSE_SERVICE_RESTART)
            self.node.rebalanced += count
