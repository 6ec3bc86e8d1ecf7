"""The scheduler loop: sends due campaign chunks, runs the webhook
dispatcher and the delivery record's housekeeping (devices.delivery.housekeeping).

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

from campaigns import abtest, canary
from campaigns.models import CampaignSlice, CampaignStatus
from campaigns.sender import send_due
from devices.delivery import dberrors, housekeeping, metrics
from devices.integrations import webhooks
from devices.native.fallback import NativeFallback

logger = logging.getLogger(__name__)


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
    # Deliveries no socket took go to the devices' providers on a thread and
    # event loop of their own: a slow provider holds up neither campaign
    # chunks nor webhooks (devices.native.fallback).
    fallback = NativeFallback().start()
    try:
        while not stop.is_set():
            chunks, delay, last_housekeeping = _tick(
                clock, dispatcher, delay, poll_seconds, last_housekeeping
            )
            if chunks == 0:
                stop.wait(delay)
    finally:
        fallback.stop(timeout=30)
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
        _observe_lag(clock())
        housekeeping.reap_dead_nodes()
        # A/B tests whose window passed: the winner goes to the rest.
        abtest.winners_decide_due(now=clock())
        # Canary waves whose hold passed: the next wave, or pause / abort.
        canary.waves_judge_due(now=clock())
        chunks = send_due(now=clock())
        dispatcher.tick(clock())
        now = clock().timestamp()
        if now - last_housekeeping > housekeeping.HOUSEKEEPING_SECONDS:
            housekeeping.prune(now=clock())
            last_housekeeping = now
        delay = poll_seconds
    except DatabaseError as exc:
        chunks = 0
        if dberrors.classify(exc) == dberrors.CONFLICT:
            # A chunk lost a deadlock to a push holding some of its device
            # rows (docs/architecture.md): rolled back whole, sent next pass.
            logger.info("scheduler: lost a deadlock, again next pass (%s)", exc)
            delay = poll_seconds
        else:
            # PostgreSQL down or restarting: back off and try again; no
            # chunk was half-written (each is one transaction).
            logger.warning("scheduler: database unavailable (%s)", exc)
            metrics.FAILED.labels("scheduler_database").inc()
            delay = min(max(delay * 2, 1.0), 10.0)
    return chunks, delay, last_housekeeping


def _observe_lag(now: datetime) -> None:
    """How long the oldest due campaign chunk has waited (a metric)."""
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
