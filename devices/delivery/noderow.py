"""A node's row in the database: registration, heartbeat, drain, goodbye.

Each server process has a Node row (devices.models.Node) that it refreshes
every KPNS_NODE_HEARTBEAT_SECONDS; other processes judge it dead after
KPNS_NODE_DEAD_AFTER_SECONDS without one (docs/operations.md, "Presence and
dead processes"). These run in the node's heartbeat thread.
"""

import logging
import os
import socket
from uuid import UUID

from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery import presence, rebalance, resume
from devices.models import Device
from devices.models import Node as NodeRow

logger = logging.getLogger(__name__)


def node_register(*, name: str, channel: str) -> None:
    now = timezone.now()
    NodeRow.objects.update_or_create(
        name=name,
        defaults={
            "channel_name": channel,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": now,
            "heartbeat_at": now,
            "connections": 0,
        },
    )


def node_heartbeat(
    *,
    name: str,
    channel: str,
    held: int,
    draining: bool,
    judge_dead: bool,
    live: list[tuple[UUID, str]],
) -> tuple[list[UUID], int]:
    """Refresh our row; returns the revoked devices we hold and how many
    sockets we hold above our fair share (devices.delivery.rebalance)."""
    now = timezone.now()
    updated = NodeRow.objects.filter(name=name).update(
        heartbeat_at=now, connections=held, draining=draining
    )
    if not updated:
        node_register(name=name, channel=channel)
        if live:
            # Another node judged us dead (we were stopped, or cut off from
            # the database) and marked our devices offline: they are still
            # here, and without presence no wake-up or sweep would find
            # them until they reconnect.
            restored = resume.presence_restore(node=name, live=live)
            logger.warning("node %s judged dead; %d devices restored", name, restored)
    if judge_dead:
        presence.reap_dead_nodes(now=now, exclude=name, by="node")
    revoked = list(
        Device.objects.filter(node=name, is_active=False).values_list("id", flat=True)
    )
    excess = 0
    if kpns_setting("REBALANCE_PER_SECOND") and not draining:
        excess = rebalance.fair_excess(node=name, held=held)
    return revoked, excess


def node_mark_draining(*, name: str) -> None:
    NodeRow.objects.filter(name=name).update(draining=True)


def node_forget(*, name: str) -> None:
    """The end of a drain: our devices offline, our row gone."""
    resume.presence_clear_nodes(nodes=[name])
    NodeRow.objects.filter(name=name).delete()
