"""Frequency caps and quiet hours at chunk time, with an injected clock."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.core.exceptions import ValidationError

from campaigns import lifecycle, pacing, sender
from campaigns.models import Campaign, CampaignExclusion, CampaignStatus
from devices.delivery import quiethours
from devices.models import App, CappedPush, Delivery, Device
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db(transaction=True)

# 14:00 UTC: 16:00 in Paris, 23:00 in Tokyo, 10:00 in New York.
T0 = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
TOKYO_MORNING = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)  # 08:00 JST on 2 June


def make_campaign(app, **fields):
    fields.setdefault("name", "Flash sale")
    fields.setdefault("title", "Flash sale")
    return lifecycle.campaign_create(app=app, **fields)


def send(campaign, now):
    lifecycle.campaign_schedule_now(campaign=campaign, now=now)
    sender.send_due(now=now)
    campaign.refresh_from_db()
    return campaign


def got(campaign):
    campaign.refresh_from_db()
    return set(
        Delivery.objects.filter(message_id=campaign.message_id).values_list(
            "device_id", flat=True
        )
    )


def set_app(app, **fields):
    App.objects.filter(pk=app.pk).update(**fields)
    app.refresh_from_db()
    return app


# Frequency caps ------------------------------------------------------------


def test_devices_at_the_apps_cap_are_left_out_and_counted_as_capped():
    app = set_app(make_app(), frequency_cap_count=2, frequency_cap_window_seconds=86400)
    busy, _ = make_device(app)
    fresh, _ = make_device(app)
    first = send(make_campaign(app, name="one"), T0)
    send(
        make_campaign(
            app,
            name="two",
            audience_kind="devices",
            audience={"device_ids": [str(busy.pk)]},
        ),
        T0 + timedelta(hours=1),
    )
    third = send(make_campaign(app, name="three"), T0 + timedelta(hours=2))
    assert got(first) == {busy.pk, fresh.pk}
    assert got(third) == {fresh.pk}
    assert pacing.campaign_pacing_stats(third) == {
        "capped": 1,
        "skipped": 0,
        "deferred": 0,
    }
    assert third.status == CampaignStatus.SENT


def test_the_cap_is_a_rolling_window():
    app = set_app(make_app(), frequency_cap_count=1, frequency_cap_window_seconds=86400)
    device, _ = make_device(app)
    send(make_campaign(app, name="monday"), T0)
    same_day = send(
        make_campaign(app, name="later"), T0 + timedelta(hours=23, minutes=59)
    )
    next_day = send(
        make_campaign(app, name="next"), T0 + timedelta(hours=24, seconds=1)
    )
    assert got(same_day) == set()
    assert got(next_day) == {device.pk}


def test_without_a_cap_nothing_is_counted_or_capped():
    app = make_app()
    device, _ = make_device(app)
    for name in ("a", "b", "c"):
        assert got(send(make_campaign(app, name=name), T0)) == {device.pk}
    assert CappedPush.objects.count() == 0


def test_an_exempt_campaign_is_neither_capped_nor_counted():
    app = set_app(make_app(), frequency_cap_count=1, frequency_cap_window_seconds=3600)
    device, _ = make_device(app)
    exempt = send(make_campaign(app, name="alert", frequency_cap_mode="exempt"), T0)
    capped = send(make_campaign(app, name="promo"), T0 + timedelta(minutes=1))
    exempt_again = send(
        make_campaign(app, name="alert 2", frequency_cap_mode="exempt"),
        T0 + timedelta(minutes=2),
    )
    promo_again = send(make_campaign(app, name="promo 2"), T0 + timedelta(minutes=3))
    assert got(exempt) == got(capped) == got(exempt_again) == {device.pk}
    assert got(promo_again) == set()  # capped by "promo" alone
    assert CappedPush.objects.count() == 1


def test_a_campaign_cap_of_its_own_overrides_the_apps():
    app = set_app(make_app(), frequency_cap_count=5, frequency_cap_window_seconds=86400)
    device, _ = make_device(app)
    send(make_campaign(app, name="one"), T0)
    strict = send(
        make_campaign(
            app,
            name="strict",
            frequency_cap_mode="custom",
            frequency_cap_count=1,
            frequency_cap_window_seconds=7 * 86400,
        ),
        T0 + timedelta(days=2),
    )
    assert got(strict) == set()
    assert pacing.campaign_pacing_stats(strict)["capped"] == 1


def test_a_custom_cap_needs_its_numbers():
    app = make_app()
    with pytest.raises(ValidationError) as caught:
        make_campaign(app, frequency_cap_mode="custom", frequency_cap_count=0)
    assert set(caught.value.message_dict) == {
        "frequency_cap_count",
        "frequency_cap_window_seconds",
    }


def test_a_device_capped_online_is_not_sent_or_counted_again_by_the_second_pass():
    app = set_app(make_app(), frequency_cap_count=1, frequency_cap_window_seconds=86400)
    online, _ = make_device(app)
    Device.objects.filter(pk=online.pk).update(node="node-1")
    send(make_campaign(app, name="first"), T0)
    # The window has rolled by the second pass: still not sent this one.
    campaign = make_campaign(app, name="second")
    lifecycle.campaign_schedule_now(campaign=campaign, now=T0 + timedelta(hours=1))
    sender.send_next_chunk(now=T0 + timedelta(hours=1))  # online pass: capped
    sender.send_due(now=T0 + timedelta(days=2))  # the rest, later
    assert got(campaign) == set()
    assert pacing.campaign_pacing_stats(campaign)["capped"] == 1


def test_a_device_sent_in_the_online_pass_is_not_capped_by_it_in_the_second():
    app = set_app(make_app(), frequency_cap_count=1, frequency_cap_window_seconds=86400)
    online, _ = make_device(app)
    Device.objects.filter(pk=online.pk).update(node="node-1")
    campaign = send(make_campaign(app), T0)
    assert got(campaign) == {online.pk}
    assert pacing.campaign_pacing_stats(campaign)["capped"] == 0
    assert CappedPush.objects.count() == 1


# Quiet hours -----------------------------------------------------------------


def two_zone_app(**fields):
    app = set_app(
        make_app(default_timezone="Europe/Paris"),
        quiet_hours_start=time(22, 0),
        quiet_hours_end=time(8, 0),
        **fields,
    )
    paris, _ = make_device(app, timezone="Europe/Paris")
    unset, _ = make_device(app)  # the app's default zone: Paris
    tokyo, _ = make_device(app, timezone="Asia/Tokyo")
    return app, paris, unset, tokyo


def test_a_zone_in_quiet_hours_waits_until_they_end_there():
    app, paris, unset, tokyo = two_zone_app()
    campaign = send(make_campaign(app), T0)
    assert got(campaign) == {paris.pk, unset.pk}
    assert campaign.status == CampaignStatus.SENDING
    waiting = pacing.zones_waiting(campaign, now=T0)
    assert waiting == [{"timezone": "Asia/Tokyo", "next_chunk_at": TOKYO_MORNING}]
    sender.send_due(now=TOKYO_MORNING - timedelta(seconds=1))
    assert got(campaign) == {paris.pk, unset.pk}
    sender.send_due(now=TOKYO_MORNING)
    assert got(campaign) == {paris.pk, unset.pk, tokyo.pk}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert pacing.campaign_pacing_stats(campaign) == {
        "capped": 0,
        "skipped": 0,
        "deferred": 1,
    }


def test_in_skip_mode_a_quiet_zones_devices_are_skipped_and_counted():
    app, paris, unset, tokyo = two_zone_app()
    campaign = send(make_campaign(app, quiet_hours_action="skip"), T0)
    assert got(campaign) == {paris.pk, unset.pk}
    assert campaign.status == CampaignStatus.SENT
    assert pacing.campaign_pacing_stats(campaign) == {
        "capped": 0,
        "skipped": 1,
        "deferred": 0,
    }
    assert CampaignExclusion.objects.get().device_id == tokyo.pk


def test_devices_without_a_zone_keep_the_apps_default_zone_hours():
    app = set_app(
        make_app(default_timezone="Asia/Tokyo"),
        quiet_hours_start=time(22, 0),
        quiet_hours_end=time(8, 0),
    )
    unset, _ = make_device(app)
    paris, _ = make_device(app, timezone="Europe/Paris")
    campaign = send(make_campaign(app), T0)
    assert got(campaign) == {paris.pk}
    sender.send_due(now=TOKYO_MORNING)
    assert got(campaign) == {paris.pk, unset.pk}


def test_a_campaign_may_turn_the_apps_quiet_hours_off():
    app, paris, unset, tokyo = two_zone_app()
    campaign = send(make_campaign(app, quiet_hours_mode="off"), T0)
    assert got(campaign) == {paris.pk, unset.pk, tokyo.pk}
    assert campaign.slices.get().timezone == ""  # one slice, as before


def test_a_campaign_may_have_quiet_hours_of_its_own():
    app = make_app(default_timezone="Europe/Paris")
    paris, _ = make_device(app)
    campaign = send(
        make_campaign(
            app,
            quiet_hours_mode="custom",
            quiet_hours_start=time(15, 0),
            quiet_hours_end=time(17, 30),
        ),
        T0,  # 16:00 in Paris
    )
    assert got(campaign) == set()
    sender.send_due(now=T0 + timedelta(hours=1, minutes=30))  # 17:30 CEST
    assert got(campaign) == {paris.pk}


def test_custom_quiet_hours_need_both_times_that_differ():
    app = make_app()
    with pytest.raises(ValidationError) as caught:
        make_campaign(app, quiet_hours_mode="custom", quiet_hours_start=time(22, 0))
    assert "quiet_hours_end" in caught.value.message_dict
    with pytest.raises(ValidationError):
        make_campaign(
            app,
            quiet_hours_mode="custom",
            quiet_hours_start=time(8, 0),
            quiet_hours_end=time(8, 0),
        )


def test_a_throttled_campaign_that_runs_into_the_night_waits_for_the_morning():
    app = set_app(
        make_app(default_timezone="Europe/Paris"),
        quiet_hours_start=time(22, 0),
        quiet_hours_end=time(8, 0),
    )
    devices = {make_device(app)[0].pk for _ in range(4)}
    evening = datetime(2026, 6, 1, 19, 59, tzinfo=UTC)  # 21:59 in Paris
    campaign = make_campaign(app, throttle_per_second=2)
    lifecycle.campaign_schedule_now(campaign=campaign, now=evening)
    sender.send_next_chunk(now=evening)  # online pass: nobody online
    sender.send_next_chunk(now=evening)  # two devices
    assert len(got(campaign)) == 2
    night = evening + timedelta(minutes=1)  # 22:00
    assert sender.send_next_chunk(now=night).enqueued == 0
    assert sender.send_due(now=night + timedelta(hours=9, minutes=59)) == 0
    morning = datetime(2026, 6, 2, 6, 0, tzinfo=UTC)  # 08:00 in Paris
    sender.send_due(now=morning)
    sender.send_due(now=morning + timedelta(seconds=5))
    assert got(campaign) == devices
    assert pacing.campaign_pacing_stats(campaign)["deferred"] == 2


def test_local_time_campaigns_defer_each_zone_on_its_own_clock():
    app, paris, unset, tokyo = two_zone_app()
    # 23:00 local: every zone is in quiet hours at its own 23:00.
    campaign = make_campaign(app, local_time=True)
    lifecycle.campaign_schedule(
        campaign=campaign, send_at=datetime(2026, 6, 2, 23, 0, tzinfo=UTC), now=T0
    )
    due = dict(campaign.slices.values_list("timezone", "due_at"))
    assert due == {
        "Europe/Paris": datetime(2026, 6, 3, 6, 0, tzinfo=UTC),
        "Asia/Tokyo": datetime(2026, 6, 2, 23, 0, tzinfo=UTC),
    }


def test_the_campaign_page_example_names_both_zones():
    from zoneinfo import ZoneInfo

    from devices.delivery.quiethours import QuietHours

    text = quiethours.quiet_hours_example(
        QuietHours(time(22, 0), time(8, 0)), viewer=ZoneInfo("Europe/Paris")
    )
    assert "08:00 JST" in text
    assert "in your zone (Europe/Paris)" in text
    assert Campaign  # the example is pure: no campaign needed


def test_two_campaigns_sent_at_once_respect_a_cap_of_one():
    """Two schedulers send two campaigns to the same devices at the same
    time: the devices' row locks order the cap checks, so each device gets
    exactly one of them and is capped by the other."""
    import threading

    from django.db import connection

    app = set_app(make_app(), frequency_cap_count=1, frequency_cap_window_seconds=86400)
    devices = {make_device(app)[0].pk for _ in range(40)}
    campaigns = [make_campaign(app, name=name) for name in ("a", "b")]
    for campaign in campaigns:
        lifecycle.campaign_schedule_now(campaign=campaign, now=T0)
    start = threading.Barrier(2)
    errors = []

    def scheduler(campaign):
        try:
            start.wait(timeout=10)
            while sender.send_next_chunk(now=T0, chunk_size=7, campaign_id=campaign.pk):
                pass
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler, args=(c,)) for c in campaigns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    first, second = (got(c) for c in campaigns)
    assert first | second == devices
    assert first & second == set()
    capped = [pacing.campaign_pacing_stats(c)["capped"] for c in campaigns]
    assert sum(capped) == len(devices)
    assert CappedPush.objects.count() == len(devices)
