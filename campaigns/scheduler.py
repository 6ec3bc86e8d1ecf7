"""The scheduler loop: sends due campaign chunks and does housekeeping.

Any number of schedulers may run (on PostgreSQL they share work through
SKIP LOCKED row locks); a stopped one loses nothing, because every chunk
commits its own progress (campaigns.sender).
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from campaigns import watch
from campaigns.sender import send_due
from devices import idempotency, inbox, metrics, webhooks

logger = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 30.0


def run_scheduler(
    *,
    stop: threading.Event,
    poll_seconds: float = 0.5,
    clock: Callable[[], datetime] = timezone.now,
) -> None:
    last_housekeeping = 0.0
    delay = poll_seconds
    # Webhook calls run in a thread of their own: a slow receiver never holds
    # up a campaign chunk (devices.webhooks).
    dispatcher = webhooks.WebhookDispatcher()
    try:
        while not stop.is_set():
            chunks, delay, last_housekeeping = _tick(
                clock, dispatcher, delay, poll_seconds, last_housekeeping
            )
            if chunks == 0:
                stop.wait(delay)
    finally:
        dispatcher.stop(timeout=30)


def _tick(
    clock: Callable[[], datetime],
    dispatcher: webhooks.WebhookDispatcher,
    delay: float,
    poll_seconds: float,
    last_housekeeping: float,
) -> tuple[int, float, float]:
    try:
        close_old_connections()
        watch.tick()
        chunks = send_due(now=clock())
        dispatcher.tick(clock())
        now = clock().timestamp()
        if now - last_housekeeping > HOUSEKEEPING_SECONDS:
            housekeeping(now=clock())
            last_housekeeping = now
        delay = poll_seconds
    except DatabaseError as exc:
        # PostgreSQL down or restarting: back off and try again; no
        # chunk was half-written (each is one transaction).
        logger.warning("scheduler: database unavailable (%s)", exc)
        metrics.FAILED.labels("scheduler_database").inc()
        chunks = 0
        delay = min(max(delay * 2, 1.0), 10.0)
    return chunks, delay, last_housekeeping


def housekeeping(*, now: datetime) -> None:
    """Every HOUSEKEEPING_SECONDS: expire deliveries, forget old idempotency
    records and finished webhook calls (each bounded per run)."""
    expired = inbox.expire_due(now=now)
    if expired:
        logger.info("expired %d deliveries", expired)
        metrics.EXPIRED.inc(expired)
    idempotency.records_prune(now=now)
    webhooks.deliveries_prune(now=now)
