"""Campaign lifecycle and sending, with an injected clock."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from campaigns import lifecycle, sender
from campaigns.models import Campaign, CampaignStatus
from campaigns.selectors import campaign_stats
from devices.delivery import receipts, resume
from devices.models import Delivery, DeliveryStatus, Device
from devices.registry.audience import audience_estimate
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db(transaction=True)

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_campaign(app, **fields):
    fields.setdefault("name", "Spring sale")
    fields.setdefault("title", "Spring sale")
    fields.setdefault("body", "Everything -20%")
    return lifecycle.campaign_create(app=app, **fields)


def deliveries(campaign):
    campaign.refresh_from_db()
    return Delivery.objects.filter(message_id=campaign.message_id)


def test_send_now_targets_every_matching_device_once():
    app = make_app()
    vip, _ = make_device(app, tags=["vip"], platform="ios", locale="en-US")
    make_device(app, tags=["vip"], platform="web", locale="en")
    make_device(app, tags=["other"], platform="android", locale="en")
    campaign = make_campaign(
        app,
        audience_kind="filter",
        audience={
            "tags_any": ["vip"],
            "platforms": ["ios", "android"],
            "locales": ["en"],
        },
    )
    assert audience_estimate(app, "filter", campaign.audience) == {
        "matching": 1,
        "online": 0,
    }
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    assert sender.send_due(now=NOON) == 2  # the online pass, then everyone
    rows = deliveries(campaign)
    assert list(rows.values_list("device_id", flat=True)) == [vip.pk]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def test_double_send_now_sends_once():
    app = make_app()
    make_device(app)
    campaign = make_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    with pytest.raises(lifecycle.CampaignStateError):
        lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    assert deliveries(campaign).count() == 1


def test_chunks_resume_from_the_cursor_without_repeating(monkeypatch):
    app = make_app()
    devices = [make_device(app)[0] for _ in range(7)]
    campaign = make_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    online_pass = sender.send_next_chunk(now=NOON, chunk_size=3)
    assert online_pass.enqueued == 0  # nobody is online
    first = sender.send_next_chunk(now=NOON, chunk_size=3)
    assert first.enqueued == 3 and not first.finished
    # A second scheduler (or a restarted one) continues where the cursor is.
    assert sender.send_next_chunk(now=NOON, chunk_size=3).enqueued == 3
    last = sender.send_next_chunk(now=NOON, chunk_size=3)
    assert last.enqueued == 1 and last.finished
    assert sender.send_next_chunk(now=NOON, chunk_size=3) is None
    got = sorted(deliveries(campaign).values_list("device_id", flat=True))
    assert got == sorted(d.pk for d in devices)


def test_throttle_spaces_chunks_in_time():
    app = make_app()
    for _ in range(5):
        make_device(app)
    campaign = make_campaign(app, throttle_per_second=2)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    assert sender.send_due(now=NOON) == 2  # the (empty) online pass, then 2
    assert deliveries(campaign).count() == 2
    assert sender.send_due(now=NOON + timedelta(milliseconds=900)) == 0
    assert sender.send_due(now=NOON + timedelta(seconds=1)) == 1
    assert deliveries(campaign).count() == 4


def test_cancel_mid_send_stops_the_rest_and_cancels_open_deliveries():
    app = make_app()
    for _ in range(4):
        make_device(app)
    campaign = make_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_next_chunk(now=NOON, chunk_size=2)  # online pass: nobody
    sender.send_next_chunk(now=NOON, chunk_size=2)
    lifecycle.campaign_cancel(campaign=campaign, now=NOON)
    assert sender.send_next_chunk(now=NOON, chunk_size=2) is None
    rows = deliveries(campaign)
    assert rows.count() == 2
    assert set(rows.values_list("status", flat=True)) == {DeliveryStatus.CANCELLED}


def test_local_time_schedule_sends_each_zone_at_its_own_wall_clock():
    app = make_app(default_timezone="Europe/Paris")
    tokyo, _ = make_device(app, timezone="Asia/Tokyo")
    paris, _ = make_device(app)  # no zone: the app's default
    new_york, _ = make_device(app, timezone="America/New_York")
    campaign = make_campaign(app, local_time=True)
    nine = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)  # "09:00" wall clock
    lifecycle.campaign_schedule(campaign=campaign, send_at=nine, now=NOON)

    def sent_to():
        campaign.refresh_from_db()
        if campaign.message_id is None:
            return set()
        return set(deliveries(campaign).values_list("device_id", flat=True))

    tokyo_nine = datetime(2026, 6, 2, 0, 0, tzinfo=UTC)  # 09:00 JST
    paris_nine = datetime(2026, 6, 2, 7, 0, tzinfo=UTC)  # 09:00 CEST
    ny_nine = datetime(2026, 6, 2, 13, 0, tzinfo=UTC)  # 09:00 EDT
    sender.send_due(now=tokyo_nine - timedelta(seconds=1))
    assert sent_to() == set()
    sender.send_due(now=tokyo_nine)
    assert sent_to() == {tokyo.pk}
    sender.send_due(now=paris_nine)
    assert sent_to() == {tokyo.pk, paris.pk}
    sender.send_due(now=ny_nine - timedelta(minutes=1))
    assert sent_to() == {tokyo.pk, paris.pk}
    sender.send_due(now=ny_nine)
    assert sent_to() == {tokyo.pk, paris.pk, new_york.pk}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def test_collapse_key_replaces_undelivered_older_message():
    app = make_app()
    device, _ = make_device(app)
    first = make_campaign(app, name="v1", collapse_key="score")
    lifecycle.campaign_schedule_now(campaign=first, now=NOON)
    sender.send_due(now=NOON)
    second = make_campaign(app, name="v2", collapse_key="score")
    lifecycle.campaign_schedule_now(campaign=second, now=NOON)
    sender.send_due(now=NOON)
    assert deliveries(first).get().status == DeliveryStatus.COLLAPSED
    assert deliveries(second).get().status == DeliveryStatus.PENDING


def test_expired_deliveries_are_not_replayed():
    app = make_app()
    device, _ = make_device(app)
    campaign = make_campaign(app, ttl_seconds=60)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    Delivery.objects.update(expires_at=NOON)  # long past
    result = resume.device_connect(
        device_id=device.pk, node="n1", connection_id="c1", last_seq=0
    )
    assert result.replay == []
    assert deliveries(campaign).get().status == DeliveryStatus.EXPIRED


def test_stats_are_exact_counts_of_delivery_states():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(4)]
    campaign = make_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    rows = {d.device_id: d for d in deliveries(campaign)}
    batch = receipts.Receipts(
        sent=[rows[devices[0].pk].pk, rows[devices[1].pk].pk],
        delivered=[rows[devices[1].pk].pk, rows[devices[2].pk].pk],
        opened=[(devices[2].pk, 1, str(campaign.message_id))],
    )
    receipts.receipts_record(batch)
    stats = campaign_stats(campaign)
    assert stats["targeted"] == 4
    assert stats["sent"] == 3  # delivered implies sent
    assert stats["delivered"] == 2
    assert stats["opened"] == 1
    assert stats["pending"] == 2


def test_validation_names_the_bad_fields():
    app = make_app()
    with pytest.raises(ValidationError) as error:
        lifecycle.campaign_create(
            app=app,
            name="x",
            title=" ",
            data=[1, 2],
            audience={"tags_any": "vip"},
            audience_kind="filter",
        )
    assert {"title", "data", "audience"} <= set(error.value.message_dict)
    with pytest.raises(ValidationError) as error:
        lifecycle.campaign_create(app=app, name="x", title="t", body="x" * 5000)
    assert "payload" in str(error.value)
    campaign = make_campaign(app)
    with pytest.raises(ValidationError) as error:
        lifecycle.campaign_schedule(
            campaign=campaign, send_at=NOON - timedelta(days=1), now=NOON
        )
    assert "past" in str(error.value)


def test_online_devices_are_enqueued_before_offline_ones():
    app = make_app()
    offline = [make_device(app)[0] for _ in range(4)]
    online, _ = make_device(app)
    Device.objects.filter(pk=online.pk).update(node="n1", connection_id="c")
    campaign = make_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    first = sender.send_next_chunk(now=NOON, chunk_size=2)
    assert first.enqueued == 1
    assert list(deliveries(campaign).values_list("device_id", flat=True)) == [online.pk]
    sender.send_due(now=NOON)
    assert deliveries(campaign).count() == 5
    assert {d.pk for d in offline} < set(
        deliveries(campaign).values_list("device_id", flat=True)
    )


def test_revoked_devices_are_not_targeted():
    app = make_app()
    device, _ = make_device(app)
    Device.objects.filter(pk=device.pk).update(is_active=False)
    campaign = make_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    assert deliveries(campaign).count() == 0
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT


def test_a_plain_campaign_chunk_costs_a_fixed_number_of_queries(
    django_assert_num_queries,
):
    """A plain campaign (one content, no pacing, no waves) sends a chunk
    in a pinned number of statements, whatever its size: a per-device or
    per-content query added to the send path fails here."""
    app = make_app()
    for _ in range(30):
        make_device(app)
    campaign = make_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_next_chunk(now=NOON, chunk_size=10)  # the (empty) online pass
    sender.send_next_chunk(now=NOON, chunk_size=10)  # makes the message
    # The slice lock, the campaign, its content check, the chunk's ids, the
    # message, the messages with rows, the write (PostgreSQL: one statement
    # that skips the devices that have the message already; others: the seq
    # UPDATE skipping them, and the INSERT), the counters, the slice, and
    # the transaction's own statements: 11 on PostgreSQL, 12 on others.
    with django_assert_num_queries(11 if connection.vendor == "postgresql" else 12):
        result = sender.send_next_chunk(now=NOON, chunk_size=10)
    assert result is not None and result.enqueued == 10
    assert deliveries(campaign).count() == 20
