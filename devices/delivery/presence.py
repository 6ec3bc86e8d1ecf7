"""Presence across processes and machines: which node holds which device.

`Device.node` names the server process holding the device's socket; each
node keeps a `Node` row and heartbeats it. A node silent for
`KPNS_NODE_DEAD_AFTER_SECONDS` is dead: its devices are marked offline and
its row deleted. Live nodes judge on every heartbeat, and so does the
scheduler's housekeeping, so a dead process is cleaned up even when no
server process is left (docs/operations.md).
"""

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery import metrics, resume
from devices.models import Device, Node


def reap_dead_nodes(
    *, now: datetime | None = None, exclude: str | None = None, by: str = "node"
) -> list[str]:
    """Mark the devices of dead nodes offline and delete their rows."""
    now = now or timezone.now()
    dead_before = now - timedelta(seconds=kpns_setting("NODE_DEAD_AFTER_SECONDS"))
    rows = Node.objects.filter(heartbeat_at__lt=dead_before)
    if exclude:
        rows = rows.exclude(name=exclude)
    dead = list(rows.values_list("name", flat=True))
    if dead:
        resume.presence_clear_nodes(nodes=dead)
        # A node that was only cut off finds its row gone at its next
        # heartbeat and restores the presence of its live sockets.
        Node.objects.filter(name__in=dead).delete()
        metrics.NODES_REAPED.labels(by).inc(len(dead))
    return dead


def online_by_app() -> list[dict[str, Any]]:
    """Online devices per app (one indexed COUNT per app via device_app_node_idx)."""
    rows = (
        Device.objects.filter(node__isnull=False)
        .values("app_id", "app__name")
        .annotate(online_count=Count("id"))
        .order_by("app__name")
    )
    return [
        {
            "app_id": r["app_id"],
            "app__name": r["app__name"],
            "online": r["online_count"],
        }
        for r in rows
    ]


def online_by_node() -> dict[str, int]:
    """Devices each node holds, as recorded in presence."""
    rows = (
        Device.objects.filter(node__isnull=False)
        .values_list("node")
        .annotate(count=Count("id"))
        .values_list("node", "count")
    )
    return {node: count for node, count in rows if node is not None}
