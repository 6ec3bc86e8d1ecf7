"""Retention (devices/delivery/retention.py): what goes, what stays."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from campaigns.models import Campaign
from devices.delivery import housekeeping, pushes, retention
from devices.delivery.stats import message_stats
from devices.models import Delivery, Message, MessageCount
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_walk():
    retention.reset()
    yield
    retention.reset()


@pytest.fixture
def app_devices(db):
    app = make_app()
    return app, [make_device(app)[0] for _ in range(3)]


def _sent(app, devices, *, expired_days_ago: float) -> Message:
    message, _count = pushes.push_to_devices(
        app=app, device_ids=[d.pk for d in devices], title="t"
    )
    expires = timezone.now() - timedelta(days=expired_days_ago)
    Message.objects.filter(pk=message.pk).update(expires_at=expires)
    Delivery.objects.filter(message=message).update(expires_at=expires)
    return message


def test_deliveries_and_messages_past_retention_go_the_rest_stay(app_devices):
    app, devices = app_devices
    old = _sent(app, devices, expired_days_ago=31)
    recent = _sent(app, devices, expired_days_ago=29)
    live = _sent(app, devices, expired_days_ago=-1)
    result = retention.retention_run(now=timezone.now())
    assert (result.deliveries, result.messages) == (3, 1)
    assert not Message.objects.filter(pk=old.pk).exists()
    assert not MessageCount.objects.filter(message_id=old.pk).exists()
    for kept in (recent, live):
        assert Delivery.objects.filter(message=kept).count() == 3
        assert message_stats(kept.pk)["targeted"] == 3


def test_a_campaign_keeps_its_message_and_its_stats(app_devices):
    app, devices = app_devices
    message = _sent(app, devices, expired_days_ago=40)
    Delivery.objects.filter(message=message, device=devices[0]).update(
        status="delivered", delivered_at=timezone.now(), sent_at=timezone.now()
    )
    before = message_stats(message.pk)
    campaign = Campaign.objects.create(app=app, name="c", title="t", message=message)
    assert retention.retention_run(now=timezone.now()).deliveries == 3
    assert Delivery.objects.filter(message=message).count() == 0
    campaign.refresh_from_db()
    assert campaign.message_id == message.pk
    assert message_stats(message.pk) == before
    assert before["targeted"] == 3


def test_a_slice_that_expires_later_keeps_its_rows(app_devices):
    app, devices = app_devices
    message = _sent(app, devices, expired_days_ago=31)
    later = timezone.now() - timedelta(days=5)
    Delivery.objects.filter(message=message, device=devices[0]).update(expires_at=later)
    assert retention.retention_run(now=timezone.now()).deliveries == 2
    assert Message.objects.filter(pk=message.pk).exists()
    assert Delivery.objects.filter(message=message).count() == 1


def test_a_run_deletes_at_most_its_limit(app_devices, monkeypatch):
    app, devices = app_devices
    monkeypatch.setattr(retention, "RETENTION_BATCH", 2)
    for _ in range(3):
        _sent(app, devices, expired_days_ago=35)
    assert retention.retention_run(now=timezone.now(), limit=5).deliveries == 5
    assert Delivery.objects.count() == 4
    assert retention.retention_run(now=timezone.now(), limit=5).deliveries == 4
    assert Delivery.objects.count() == 0
    assert Message.objects.count() == 0


def test_zero_days_keeps_everything(app_devices, settings):
    settings.KPNS = {**settings.KPNS, "RETENTION_DAYS": 0}
    app, devices = app_devices
    _sent(app, devices, expired_days_ago=400)
    assert retention.retention_run(now=timezone.now()).deliveries == 0
    assert Delivery.objects.count() == 3


def test_housekeeping_applies_retention(app_devices):
    app, devices = app_devices
    _sent(app, devices, expired_days_ago=31)
    housekeeping.prune(now=timezone.now())
    assert Delivery.objects.count() == 0


def test_backfill_command_counts_messages_without_counters(app_devices):
    app, devices = app_devices
    message = _sent(app, devices, expired_days_ago=-1)
    MessageCount.objects.all().delete()
    call_command("kpns_counts_backfill", "--limit", "10")
    assert MessageCount.objects.filter(message=message, shard=-1).get().targeted == 3


def test_a_campaign_from_before_counters_is_counted_before_its_rows_go(
    app_devices,
):
    app, devices = app_devices
    message = _sent(app, devices, expired_days_ago=40)
    MessageCount.objects.filter(message=message).delete()  # an older release
    Campaign.objects.create(app=app, name="c", title="t", message=message)
    retention.retention_run(now=timezone.now())
    assert Delivery.objects.filter(message=message).count() == 0
    assert message_stats(message.pk)["targeted"] == 3
