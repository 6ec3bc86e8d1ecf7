"""Canary rollouts: wave membership, the judge with an injected clock,
pause, resume and promote (campaigns.canary)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns import canary, content, lifecycle, sender
from campaigns.models import Campaign, CampaignMessage, CampaignStatus
from devices.delivery import receipts
from devices.models import Delivery, DeliveryStatus, Device, MessageEvent
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db(transaction=True)

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOLD = timedelta(seconds=600)


def canary_campaign(app, **fields):
    fields.setdefault("wave_percents", [10, 50, 100])
    fields.setdefault("wave_hold_seconds", 600)
    fields.setdefault("canary_min_delivery_rate", 90)
    return lifecycle.campaign_create(app=app, name="Canary", title="Hi", **fields)


def received(campaign):
    return set(
        Delivery.objects.filter(message__campaign_link__campaign=campaign)
        .exclude(status=DeliveryStatus.CANCELLED)
        .values_list("device_id", flat=True)
    )


def ack_all(campaign):
    rows = list(
        Delivery.objects.filter(
            message__campaign_link__campaign=campaign, delivered_at__isnull=True
        )
    )
    receipts.receipts_record(
        receipts.Receipts(sent=[], delivered=[row.pk for row in rows], opened=[])
    )


def expected_wave(campaign, devices, index):
    percents = campaign.wave_percents
    return {
        d.pk
        for d in devices
        if canary.wave_of(content.device_bucket(campaign.pk, d.pk), percents) == index
    }


def test_wave_of_maps_buckets_to_cumulative_shares():
    assert canary.wave_of(0, [1, 10, 100]) == 0
    assert canary.wave_of(99, [1, 10, 100]) == 0
    assert canary.wave_of(100, [1, 10, 100]) == 1
    assert canary.wave_of(999, [1, 10, 100]) == 1
    assert canary.wave_of(1000, [1, 10, 100]) == 2
    assert canary.wave_of(9999, [1, 10, 100]) == 2


def test_waves_are_validated():
    app = make_app()
    for bad in ([100], [10, 5, 100], [10, 50], ["a", 100], [0, 100]):
        with pytest.raises(ValidationError) as err:
            canary_campaign(app, wave_percents=bad)
        assert "wave_percents" in err.value.message_dict
    with pytest.raises(ValidationError) as err:
        canary_campaign(app, canary_min_delivery_rate=120)
    assert "canary_min_delivery_rate" in err.value.message_dict


def test_good_waves_are_released_after_each_hold_until_everyone_has_it():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(150)]
    campaign = canary_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    first = expected_wave(campaign, devices, 0)
    assert 0 < len(first) < 40
    assert received(campaign) == first
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    assert campaign.wave_sent_at == NOON
    ack_all(campaign)
    # Within the hold nothing is judged and nothing more is sent.
    assert canary.waves_judge_due(now=NOON + HOLD - timedelta(seconds=1)) == 0
    sender.send_due(now=NOON + HOLD - timedelta(seconds=1))
    assert received(campaign) == first
    later = NOON + HOLD
    assert canary.waves_judge_due(now=later) == 1
    sender.send_due(now=later)
    second = first | expected_wave(campaign, devices, 1)
    assert received(campaign) == second
    ack_all(campaign)
    assert canary.waves_judge_due(now=later + HOLD) == 1
    sender.send_due(now=later + HOLD)
    assert received(campaign) == {d.pk for d in devices}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    # Each device received exactly one message.
    assert Delivery.objects.filter(
        message__campaign_link__campaign=campaign
    ).count() == len(devices)
    results = canary.wave_results(campaign)
    assert [r.sent for r in results] == [
        len(expected_wave(campaign, devices, i)) for i in range(3)
    ]
    assert results[0].delivery_rate == 1.0


def test_a_bad_first_wave_aborts_and_the_rest_receive_nothing():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(150)]
    campaign = canary_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    first = received(campaign)
    # Nobody acks: delivery rate 0% < 90%.
    at = NOON + HOLD + timedelta(minutes=5)
    assert canary.waves_judge_due(now=at) == 1
    sender.send_due(now=at + HOLD)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert campaign.canary_reason == (
        "Wave 1: delivery rate 0% < 90%: aborted at 12:15 UTC"
    )
    # The first wave's undelivered pushes are cancelled; nobody else got one.
    rows = Delivery.objects.filter(message__campaign_link__campaign=campaign)
    assert {r.device_id for r in rows} == first
    assert {r.status for r in rows} == {DeliveryStatus.CANCELLED}
    assert len(first) < len(devices)


def test_an_abort_set_to_recall_recalls_the_first_wave_and_says_so():
    from devices.models import Control, Message

    app = make_app()
    for _ in range(150):
        make_device(app)
    campaign = canary_campaign(app, canary_recall_on_abort=True)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    first = received(campaign)
    # Written to the sockets, never acknowledged: delivery rate 0% < 90%.
    Delivery.objects.update(status=DeliveryStatus.SENT)
    assert canary.waves_judge_due(now=NOON + HOLD) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert campaign.canary_reason == (
        "Wave 1: delivery rate 0% < 90%: aborted at 12:10 UTC; "
        f"recalled from {len(first)} devices"
    )
    recall = Message.objects.get(control=Control.RECALL)
    told = Delivery.objects.filter(message=recall)
    assert set(told.values_list("device_id", flat=True)) == first


def test_a_bad_wave_pauses_then_resume_overrides_and_releases_the_next():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(150)]
    campaign = canary_campaign(app, canary_action="pause", canary_min_open_rate=50)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    ack_all(campaign)  # delivered, never opened: open rate 0% < 50%
    assert canary.waves_judge_due(now=NOON + HOLD) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert campaign.canary_auto_paused
    assert "open rate 0% < 50%: paused at 12:10 UTC" in campaign.canary_reason
    # Paused: the scheduler sends nothing.
    sender.send_due(now=NOON + 3 * HOLD)
    assert received(campaign) == expected_wave(campaign, devices, 0)
    canary.campaign_resume(campaign=campaign, by="ann", now=NOON + 3 * HOLD)
    sender.send_due(now=NOON + 3 * HOLD)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING and campaign.wave == 1
    assert received(campaign) == expected_wave(campaign, devices, 0) | (
        expected_wave(campaign, devices, 1)
    )


def test_manual_pause_holds_sending_and_promote_skips_the_hold():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(100)]
    campaign = canary_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    canary.campaign_pause(campaign=campaign, now=NOON)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert not campaign.canary_auto_paused
    # A paused campaign is not judged.
    assert canary.waves_judge_due(now=NOON + 2 * HOLD) == 0
    canary.campaign_resume(campaign=campaign, now=NOON)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING and campaign.wave == 0
    canary.wave_promote(campaign=campaign, by="ann", now=NOON)
    canary.wave_promote(campaign=campaign, by="ann", now=NOON)
    sender.send_due(now=NOON)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert received(campaign) == {d.pk for d in devices}
    with pytest.raises(ValidationError):
        canary.wave_promote(campaign=campaign, now=NOON)


def counted_row_by_row(campaign):
    """Each wave's figures from the delivery rows, one by one."""
    figures = [[0] * 7 for _ in campaign.wave_percents]
    rows = Delivery.objects.filter(message__campaign_link__campaign=campaign)
    for row in rows.select_related("device"):
        bucket = content.device_bucket(campaign.pk, row.device_id)
        counts = figures[canary.wave_of(bucket, campaign.wave_percents)]
        device = row.device
        counts[0] += 1
        counts[1] += row.delivered_at is not None
        counts[2] += row.opened_at is not None
        counts[3] += row.status in (DeliveryStatus.EXPIRED, DeliveryStatus.DROPPED)
        counts[4] += bool(device.revoked_at and device.revoked_at >= row.created_at)
        counts[5] += bool(device.bad_close_at and device.bad_close_at >= row.created_at)
        counts[6] += MessageEvent.objects.filter(
            device_id=row.device_id, message_id=row.message_id, name="crash"
        ).exists()
    return figures


def test_each_wave_has_its_own_messages_and_its_figures_match_the_rows(
    django_assert_max_num_queries,
):
    from devices.registry.message_events import message_event_record
    from devices.registry.services import device_deactivate

    app = make_app()
    devices = [
        make_device(app, locale="fr" if i % 3 == 0 else "en")[0] for i in range(200)
    ]
    campaign = lifecycle.campaign_create(
        app=app,
        name="Canary",
        title="Hi",
        wave_percents=[20, 60, 100],
        wave_hold_seconds=600,
        canary_event_name="crash",
        languages=[{"variant": "A", "locale": "fr", "title": "Salut"}],
    )
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    canary.wave_promote(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    campaign.refresh_from_db()
    # A message per wave and language: waves 0 and 1 sent, 2 waiting.
    links = CampaignMessage.objects.filter(campaign=campaign)
    assert sorted(links.values_list("wave", "locale")) == [
        (0, ""),
        (0, "fr"),
        (1, ""),
        (1, "fr"),
    ]
    rows = list(
        Delivery.objects.filter(message__campaign_link__campaign=campaign).order_by(
            "pk"
        )
    )
    by_id = {d.pk: d for d in devices}
    # Every signal, on different rows of both waves.
    receipts.receipts_record(
        receipts.Receipts(delivered=[r.pk for r in rows[::2]], opened=[])
    )
    receipts.receipts_record(
        receipts.Receipts(
            opened=[(r.device_id, r.seq, str(r.message_id)) for r in rows[::4]]
        )
    )
    for row in rows[1::5]:
        message_event_record(
            device=by_id[row.device_id], message_id=row.message_id, name="crash"
        )
    for row in rows[3::7]:
        device_deactivate(device=by_id[row.device_id])
    Device.objects.filter(pk__in=[r.device_id for r in rows[5::6]]).update(
        bad_close_at=timezone.now()
    )
    receipts.expire_due(now=timezone.now() + timedelta(days=30))
    campaign.refresh_from_db()
    with django_assert_max_num_queries(6):
        results = canary.wave_results(campaign)
    figures = [
        [r.sent, r.delivered, r.opened, r.errors, r.opted_out, r.closed, r.events]
        for r in results
    ]
    assert figures == counted_row_by_row(campaign)
    assert figures[0][0] and figures[1][0] and not figures[2][0]
    assert all(all(value for value in wave) for wave in figures[:2])
    assert [r.released for r in results] == [True, True, False]


def test_a_resent_chunk_assigns_the_same_wave():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(80)]
    campaign = canary_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    campaign = Campaign.objects.get(pk=campaign.pk)
    once = {d.pk for d in canary.devices_in_wave(campaign, devices)}
    again = {d.pk for d in canary.devices_in_wave(campaign, list(reversed(devices)))}
    assert once == again == expected_wave(campaign, devices, 0)


def test_devices_unregistering_after_the_push_count_as_opt_outs():
    from devices.registry.services import device_deactivate

    app = make_app()
    devices = [make_device(app)[0] for _ in range(150)]
    early = devices[-1]
    device_deactivate(device=early)  # before the campaign: not an opt-out
    campaign = canary_campaign(
        app, canary_min_delivery_rate=None, canary_max_optout_rate=20
    )
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    first = [d for d in devices if d.pk in received(campaign)]
    assert early.pk not in {d.pk for d in first}
    for device in first[: len(first) // 2 + 1]:
        device_deactivate(device=device)
    result = canary.wave_results(Campaign.objects.get(pk=campaign.pk))[0]
    assert result.opted_out == len(first) // 2 + 1
    assert canary.waves_judge_due(now=NOON + HOLD) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert campaign.canary_reason.startswith("Wave 1: opt-out rate ")
    assert "% > 20%: aborted at 12:10 UTC" in campaign.canary_reason


def test_devices_closed_4429_or_4400_after_the_push_abort_the_wave():
    app = make_app()
    for _ in range(150):
        make_device(app)
    campaign = canary_campaign(
        app, canary_min_delivery_rate=None, canary_max_close_rate=10
    )
    # Closed before the push was written: not a signal of this push.
    Device.objects.update(bad_close_at=NOON - timedelta(minutes=1))
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    ack_all(campaign)  # delivered fine, but the sockets are then closed
    first = sorted(received(campaign))
    closed = first[: len(first) // 4 + 1]
    Delivery.objects.filter(device_id__in=first).update(created_at=NOON)
    Device.objects.filter(pk__in=closed).update(
        bad_close_at=NOON + timedelta(minutes=3)
    )
    result = canary.wave_results(Campaign.objects.get(pk=campaign.pk))[0]
    assert result.closed == len(closed)
    # Not judged before the hold has passed.
    assert canary.waves_judge_due(now=NOON + HOLD - timedelta(seconds=1)) == 0
    assert canary.waves_judge_due(now=NOON + HOLD) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    rate = round(100 * result.closed / len(first))
    assert campaign.canary_reason == (
        f"Wave 1: 4429/4400 close rate {rate}% > 10%: aborted at 12:10 UTC"
    )


def test_few_4429_closes_let_the_next_wave_go():
    app = make_app()
    for _ in range(150):
        make_device(app)
    campaign = canary_campaign(
        app, canary_min_delivery_rate=None, canary_max_close_rate=50
    )
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    first = sorted(received(campaign))
    Delivery.objects.filter(device_id__in=first).update(created_at=NOON)
    Device.objects.filter(pk=first[0]).update(bad_close_at=NOON)
    assert canary.wave_results(Campaign.objects.get(pk=campaign.pk))[0].closed == 1
    assert canary.waves_judge_due(now=NOON + HOLD) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING and campaign.wave == 1


def test_crash_events_reported_by_the_app_abort_the_wave():
    from devices.registry.message_events import message_event_record

    app = make_app()
    devices = [make_device(app)[0] for _ in range(150)]
    campaign = canary_campaign(app, canary_event_name="crash", canary_max_event_rate=5)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    ack_all(campaign)  # delivered fine, but the app crashes
    rows = list(Delivery.objects.filter(message__campaign_link__campaign=campaign))
    crashed = rows[: len(rows) // 4 + 1]
    for row in crashed:
        by_id = {d.pk: d for d in devices}
        assert message_event_record(
            device=by_id[row.device_id], message_id=row.message_id, name="crash"
        )
        # A repeat is counted once; another name is not a crash.
        assert not message_event_record(
            device=by_id[row.device_id], message_id=row.message_id, name="crash"
        )
        message_event_record(
            device=by_id[row.device_id], message_id=row.message_id, name="opened_cart"
        )
    result = canary.wave_results(Campaign.objects.get(pk=campaign.pk))[0]
    assert result.events == len(crashed)
    assert canary.waves_judge_due(now=NOON + HOLD) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert campaign.canary_reason.startswith("Wave 1: crash rate ")
    assert "% > 5%: aborted at 12:10 UTC" in campaign.canary_reason


def test_the_scheduler_tick_runs_the_judge_with_its_clock():
    from campaigns import scheduler
    from devices.integrations import webhooks

    app = make_app()
    for _ in range(100):
        make_device(app)
    campaign = canary_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    dispatcher = webhooks.WebhookDispatcher()
    try:
        scheduler._tick(lambda: NOON, dispatcher, 0.5, 0.5, 0.0)
        campaign.refresh_from_db()
        assert campaign.wave_sent_at == NOON and campaign.status == "sending"
        # Nobody acked: at the end of the hold the tick aborts it.
        scheduler._tick(lambda: NOON + HOLD, dispatcher, 0.5, 0.5, 0.0)
    finally:
        dispatcher.stop(timeout=5)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert campaign.canary_reason.startswith("Wave 1: delivery rate 0% < 90%")
