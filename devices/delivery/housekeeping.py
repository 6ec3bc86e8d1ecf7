"""Periodic upkeep of the delivery record, run by the scheduler process.

* Dead server processes: every KPNS_NODE_HEARTBEAT_SECONDS the devices of
  nodes silent for KPNS_NODE_DEAD_AFTER_SECONDS are marked offline, as live
  nodes do on their heartbeats, so this also happens when no server process
  is left. Like a node, the scheduler judges only after it has itself
  reached the database for that long: after an outage every heartbeat is
  old.
* Every HOUSEKEEPING_SECONDS: expire deliveries whose TTL passed, delete
  deliveries and messages KPNS_RETENTION_DAYS past their expiry
  (devices.delivery.retention), forget old idempotency records, finished
  webhook calls, per-minute delivery tallies and frequency-cap history
  older than any cap's window (each bounded per run).
"""

import logging
import time
from datetime import datetime, timedelta

from django.db import DatabaseError

from devices.conf import kpns_setting
from devices.delivery import caps, counters, metrics, presence, receipts, retention
from devices.integrations import idempotency, webhooks

logger = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 30.0
# Per-minute delivery tallies kept: the dashboard reads the last hour.
MINUTES_KEPT = timedelta(days=2)

_healthy_since: float | None = None
_last_reap = 0.0


def reap_dead_nodes() -> None:
    """Mark the devices of dead server processes offline (when due)."""
    global _healthy_since, _last_reap
    try:
        mono = time.monotonic()
        if _healthy_since is None:
            _healthy_since = mono
        healthy_for = mono - _healthy_since
        due = mono - _last_reap >= kpns_setting("NODE_HEARTBEAT_SECONDS")
        if due and healthy_for >= kpns_setting("NODE_DEAD_AFTER_SECONDS"):
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


def prune(*, now: datetime) -> None:
    """Expire deliveries, apply retention, forget old idempotency records,
    webhook calls and delivery tallies."""
    expired = receipts.expire_due(now=now)
    if expired:
        logger.info("expired %d deliveries", expired)
        metrics.EXPIRED.inc(expired)
    retained = retention.retention_run(now=now)
    if retained.deliveries or retained.messages:
        logger.info(
            "retention deleted %d deliveries and %d messages",
            retained.deliveries,
            retained.messages,
        )
    counters.minutes_prune(before=now - MINUTES_KEPT)
    idempotency.records_prune(now=now)
    webhooks.deliveries_prune(now=now)
    caps.ledger_prune(now=now)
