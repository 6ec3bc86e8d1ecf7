"""Room for a drain: can the other server processes take one's sockets?

A drained process's devices reconnect to the others (nginx's least_conn),
and a process holds at most KPNS_MAX_SOCKETS_PER_PROCESS sockets (by
default its open-file hard limit minus a margin): past it, accept() fails
with EMFILE and the devices retry until a process has room. `deploy/kpnsctl
roll` therefore asks, before it restarts a process, whether the sum over
the other live processes of (capacity - held) covers what that process
holds, and refuses otherwise (docs/operations.md, "Upgrades").
"""

import resource
import socket
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery import presence
from devices.models import Node as NodeRow

# Descriptors a server process needs besides its sockets: database and
# Redis connections, log files, listening sockets, the event loop's own.
DESCRIPTOR_MARGIN = 100
# What "unlimited" is taken for (the kernel's default fs.nr_open).
UNLIMITED = 1_048_576


def max_sockets_per_process() -> int:
    configured = int(kpns_setting("MAX_SOCKETS_PER_PROCESS"))
    if configured > 0:
        return configured
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = UNLIMITED
    return max(0, hard - DESCRIPTOR_MARGIN)


@dataclass
class NodeLoad:
    name: str
    hostname: str
    pid: int
    held: int
    draining: bool
    heartbeat_age_s: float


def nodes_live() -> list[NodeLoad]:
    """Every process that heartbeats, with the sockets it holds: the larger
    of its row's count (up to a heartbeat old) and its devices in presence
    (written at each connect), so a burst of connects is not missed."""
    now = timezone.now()
    alive_since = now - timedelta(seconds=kpns_setting("NODE_DEAD_AFTER_SECONDS"))
    online = presence.online_by_node()
    return [
        NodeLoad(
            name=row.name,
            hostname=row.hostname,
            pid=row.pid,
            held=max(row.connections, online.get(row.name, 0)),
            draining=row.draining,
            heartbeat_age_s=round((now - row.heartbeat_at).total_seconds(), 1),
        )
        for row in NodeRow.objects.filter(heartbeat_at__gte=alive_since)
    ]


def drain_refusals(
    *, pids: list[int], hostname: str | None = None, capacity: int | None = None
) -> list[str]:
    """Why each of these processes (of this host) cannot be drained now:
    an empty list when the others have room for every one in turn."""
    hostname = hostname or socket.gethostname()
    capacity = capacity or max_sockets_per_process()
    nodes = nodes_live()
    refusals = []
    for pid in pids:
        this = next((n for n in nodes if n.hostname == hostname and n.pid == pid), None)
        if this is None or this.held == 0:
            continue  # nothing to move (a process not yet registered holds none)
        others = [n for n in nodes if n is not this and not n.draining]
        room = sum(max(0, capacity - n.held) for n in others)
        if room < this.held:
            refusals.append(
                f"process {pid} ({this.name}) holds {this.held} sockets; the "
                f"{len(others)} other live process(es) have room for {room} "
                f"({capacity} each, KPNS_MAX_SOCKETS_PER_PROCESS): "
                + (", ".join(f"{n.name} holds {n.held}" for n in others) or "none")
            )
    return refusals


def as_json(nodes: list[NodeLoad]) -> list[dict[str, Any]]:
    return [asdict(node) for node in nodes]
