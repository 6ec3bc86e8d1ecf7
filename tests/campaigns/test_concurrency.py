"""Several schedulers and clicks at once: no double send, nothing missed."""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.models import Count

from campaigns import lifecycle, sender
from campaigns.models import Campaign, CampaignStatus
from devices.models import Delivery
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db(transaction=True)

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def run_in_threads(count, target):
    errors = []

    def wrapped():
        try:
            target()
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapped) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_two_schedulers_share_a_campaign_without_double_or_missed_sends():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(60)]
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)

    def scheduler():
        while sender.send_next_chunk(now=NOON, chunk_size=7) is not None:
            pass

    assert run_in_threads(2, scheduler) == []
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    per_device = (
        Delivery.objects.filter(message=campaign.message)
        .values("device_id")
        .annotate(n=Count("pk"))
    )
    assert len(per_device) == len(devices)
    assert {row["n"] for row in per_device} == {1}


def test_concurrent_send_now_clicks_schedule_once():
    app = make_app()
    make_device(app)
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    outcomes = []

    def click():
        try:
            lifecycle.campaign_schedule_now(
                campaign=Campaign.objects.get(pk=campaign.pk)
            )
            outcomes.append("sent")
        except lifecycle.CampaignStateError:
            outcomes.append("refused")

    assert run_in_threads(4, click) == []
    assert sorted(outcomes) == ["refused", "refused", "refused", "sent"]
    assert campaign.slices.count() == 1


@pytest.mark.parametrize(
    ("sqlstate", "delay", "counted"),
    [("40P01", 0.5, 0), ("08006", 2.0, 1)],
)
def test_a_lost_deadlock_is_sent_next_pass_not_counted_as_an_outage(
    monkeypatch, sqlstate, delay, counted
):
    """A chunk that loses a deadlock to a push is retried at the next poll;
    only an unreachable database backs the scheduler off."""
    from django.db import OperationalError

    from campaigns import scheduler
    from devices.delivery import metrics
    from devices.integrations import webhooks

    class Driver(Exception):
        def __init__(self, state):
            super().__init__(state)
            self.sqlstate = state

    def losing(now):
        raise OperationalError(sqlstate) from Driver(sqlstate)

    monkeypatch.setattr(scheduler, "send_due", losing)
    failed = metrics.FAILED.labels("scheduler_database")
    before = failed._value.get()
    dispatcher = webhooks.WebhookDispatcher()
    try:
        chunks, next_delay, _ = scheduler._tick(
            lambda: datetime(2026, 6, 1, 12, tzinfo=UTC), dispatcher, 1.0, 0.5, 0.0
        )
    finally:
        dispatcher.stop(timeout=5)
    assert (chunks, next_delay) == (0, delay)
    assert failed._value.get() - before == counted
