"""Frequency cap and quiet hours in a real browser, as a Marketer: the
composer takes a campaign's own cap and quiet hours with the rule said in
the marketer's zone; after Send now the campaign page shows the device at
its cap as capped and the zone in quiet hours as waiting, then deferred
once the scheduler's clock passes the end of its night."""

import zoneinfo
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from campaigns import sender
from campaigns.models import Campaign, CampaignSlice, CampaignStatus
from campaigns.roles import marketer_group
from devices.delivery import caps
from tests.browser import test_console as base
from tests.browser.test_console import WIDTH, page_width, shot
from tests.factories import make_app, make_device

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
console = base.console  # the Marketer's browser page at 1366 x 900, Paris


def world():
    app = make_app(name="Shop app", default_timezone="Europe/Paris")
    for zone in ("Europe/Paris", "Europe/Paris", "Asia/Tokyo", "Asia/Tokyo"):
        make_device(app, timezone=zone)
    capped, _ = make_device(app, timezone="Europe/Paris")
    # Its one push of the day, an hour ago.
    caps.pushes_record([capped.pk], now=timezone.now() - timedelta(hours=1))
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(marketer_group())
    return app


def tokyo_night() -> tuple[str, str]:
    """A three-hour window around Tokyo's wall clock now: Tokyo is inside,
    Paris (seven or eight hours behind) is not."""
    there = timezone.now().astimezone(TOKYO)
    start = there - timedelta(hours=1)
    end = there + timedelta(hours=2)
    return f"{start:%H:%M}", f"{end:%H:%M}"


def tokyo_slice_due(campaign_id):
    return CampaignSlice.objects.get(
        campaign_id=campaign_id, timezone="Asia/Tokyo"
    ).next_chunk_at


def campaign_state(campaign_id):
    return Campaign.objects.get(pk=campaign_id).status


@pytest.mark.timeout(180)
def test_marketer_sets_a_cap_and_quiet_hours_and_sees_them_counted(console, orm):
    app = orm(world)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    page.select_option("#id_app", str(app.pk))
    page.fill("#id_name", "Night owls")
    page.fill("#id_title", "Flash sale: 30% off")
    page.check("#id_confirm_everyone")
    # The rule, in the marketer's own zone.
    note = page.inner_text("fieldset.kpns-pacing-box .description")
    assert "a device in Tokyo gets a deferred push at" in note
    assert "in your zone (Europe/Paris)" in note
    # A cap of its own: its fields appear.
    assert not page.is_visible("#id_frequency_cap_count")
    page.check("input[name=frequency_cap_mode][value=custom]")
    page.fill("#id_frequency_cap_count", "1")
    page.select_option("#id_frequency_cap_window_seconds", "86400")
    start, end = tokyo_night()
    page.check("input[name=quiet_hours_mode][value=custom]")
    page.fill("#id_quiet_hours_start", start)
    page.fill("#id_quiet_hours_end", end)
    page.check("input[name=quiet_hours_action][value=defer]")
    # The box explains the window being typed, for this app, live.
    page.wait_for_function(
        "document.querySelector('fieldset.kpns-pacing-box .description')"
        f".textContent.includes('gets a deferred push at {end} JST')"
    )
    note = page.inner_text("fieldset.kpns-pacing-box .description")
    assert "The app Shop app: no frequency cap; no quiet hours." in note
    assert "This campaign: at most 1 campaign push per device per 1 day" in note
    page.wait_for_function(
        "document.getElementById('est-matching').textContent === '5'"
    )
    assert page_width(page) <= WIDTH
    shot(page, "console-pacing-compose")
    page.click("#submit-send_now")
    page.wait_for_selector(".messagelist li")
    assert "queued to send now" in page.inner_text(".messagelist")
    campaign = orm(Campaign.objects.get)
    assert (campaign.frequency_cap_count, campaign.quiet_hours_mode) == (1, "custom")

    # The scheduler's turn: Paris now, Tokyo when its quiet hours end.
    orm(sender.send_due, now=timezone.now())
    page.reload()
    page.wait_for_selector("#kpns-pacing-stats")
    assert page.inner_text('[data-pacing="capped"]') == "1"
    assert page.inner_text('[data-stat="targeted"]') == "2"
    waiting = page.inner_text("#kpns-zones-waiting")
    assert "Asia/Tokyo: at" in waiting and "JST" in waiting
    assert "in your zone" in waiting
    assert page_width(page) <= WIDTH
    shot(page, "console-quiet-hours")

    due = orm(tokyo_slice_due, campaign.pk)
    assert f"{due.astimezone(TOKYO):%H:%M}" == end
    orm(sender.send_due, now=due)
    assert orm(campaign_state, campaign.pk) == CampaignStatus.SENT
    page.reload()
    page.wait_for_selector("#kpns-pacing-stats")
    assert page.inner_text('[data-pacing="deferred"]') == "2"
    assert page.inner_text('[data-pacing="capped"]') == "1"
    assert page.inner_text('[data-pacing="skipped"]') == "0"
    assert page.inner_text('[data-stat="targeted"]') == "4"
    assert not page.is_visible("#kpns-zones-waiting")
    shot(page, "console-frequency-cap")
