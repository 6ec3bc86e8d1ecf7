"""What a scheduler does for operations on each tick (docs/operations.md).

* Scheduler lag: how long the oldest due campaign chunk has waited
  (`kpns_scheduler_lag_seconds`).
* Dead server processes: every KPNS_NODE_HEARTBEAT_SECONDS it marks the
  devices of nodes silent for KPNS_NODE_DEAD_AFTER_SECONDS offline, as live
  nodes do on their heartbeats, so this also happens when no server process
  is left. Like a node, it judges only after it has itself reached the
  database for that long: after an outage every heartbeat is old.
"""

import logging
import time

from django.db import DatabaseError
from django.utils import timezone

from campaigns.models import CampaignSlice, CampaignStatus
from devices import metrics, presence
from devices.conf import kpns_setting

logger = logging.getLogger(__name__)

_healthy_since: float | None = None
_last_reap = 0.0


def tick() -> None:
    global _healthy_since, _last_reap
    try:
        now = timezone.now()
        oldest = (
            CampaignSlice.objects.filter(
                done=False,
                next_chunk_at__lte=now,
                campaign__status__in=[CampaignStatus.SCHEDULED, CampaignStatus.SENDING],
            )
            .order_by("next_chunk_at")
            .values_list("next_chunk_at", flat=True)
            .first()
        )
        metrics.SCHEDULER_LAG.set((now - oldest).total_seconds() if oldest else 0.0)
        mono = time.monotonic()
        if _healthy_since is None:
            _healthy_since = mono
        healthy_for = mono - _healthy_since
        if mono - _last_reap >= kpns_setting(
            "NODE_HEARTBEAT_SECONDS"
        ) and healthy_for >= kpns_setting("NODE_DEAD_AFTER_SECONDS"):
            _last_reap = mono
            dead = presence.reap_dead_nodes(by="scheduler")
            if dead:
                logger.warning(
                    "dead server processes: their devices are offline now",
                    extra={"nodes": ",".join(dead)},
                )
    except DatabaseError:
        _healthy_since = None
        raise


def reset() -> None:
    """Forget the health record (tests)."""
    global _healthy_since, _last_reap
    _healthy_since, _last_reap = None, 0.0
