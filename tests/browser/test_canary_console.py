"""A canary campaign in a real browser (Debian's Chromium) as a Marketer,
at 1366 x 900: composed with two waves and a delivery-rate threshold, sent,
its first wave mostly unacknowledged, judged by the scheduler's step with a
later clock, and the waves with the abort reason (its time in the
marketer's zone) shown on the campaign page. Full page screenshot
var/screenshots/console-canary-abort.png."""

import zoneinfo
from datetime import timedelta

import pytest

from campaigns import canary, sender
from campaigns.models import Campaign, CampaignStatus
from devices.delivery import receipts
from devices.models import Delivery
from tests.browser import test_console as base

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

console = base.console  # the Marketer's browser page, logged in by login()
WIDTH, page_width, world = base.WIDTH, base.page_width, base.world


def shot(page, name):
    page.evaluate("window.scrollTo(0, 0)")
    return base.shot(page, name)


def ack_some(campaign_id, count):
    """Only `count` devices of the first wave ack: the bad signal."""
    rows = Delivery.objects.filter(
        message__campaign_link__campaign_id=campaign_id
    ).order_by("pk")[:count]
    receipts.receipts_record(
        receipts.Receipts(sent=[], delivered=[row.pk for row in rows])
    )


@pytest.mark.timeout(180)
def test_canary_waves_and_the_abort_reason_on_the_campaign_page(console, orm):
    app = orm(world, devices=60)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    page.select_option("#id_app", str(app.pk))
    page.wait_for_function(
        "document.getElementById('est-matching').textContent === '60'"
    )
    page.fill("#id_name", "New checkout, staged")
    page.fill("#id_title", "Try the new checkout")
    page.select_option("#id_audience_kind", "all")
    page.check("#id_confirm_everyone")
    page.click("summary:has-text('Canary rollout')")
    page.fill("#id_wave_percents", "25, 100")
    page.fill("#id_wave_hold_seconds", "10m")
    page.fill("#id_canary_min_delivery_rate", "90")
    page.select_option("#id_canary_action", "abort")
    page.click("#submit-send_now")
    page.wait_for_selector(".messagelist li")
    assert "queued to send now" in page.inner_text(".messagelist")
    campaign = orm(Campaign.objects.get)
    assert campaign.wave_percents == [25, 100]
    started = campaign.started_at
    orm(sender.send_due, now=started)
    first = orm(Delivery.objects.count)
    assert 0 < first < 60
    acked = max(1, first // 3)
    orm(ack_some, campaign.pk, acked)
    page.reload()
    page.wait_for_selector("#wave-stats")
    assert "holding" in page.inner_text('#wave-stats tr[data-wave="1"]')
    assert "waiting" in page.inner_text('#wave-stats tr[data-wave="2"]')
    assert page.is_visible("button[value=promote]")
    # The scheduler's step, its clock past the hold.
    later = orm(Campaign.objects.get).wave_sent_at + timedelta(minutes=10)
    assert orm(canary.waves_judge_due, now=later) == 1
    orm(sender.send_due, now=later)
    assert orm(Delivery.objects.count) == first  # the second wave never went
    assert orm(Campaign.objects.get).status == CampaignStatus.CANCELLED
    page.reload()
    page.wait_for_selector("#kpns-canary-reason")
    rate = round(100 * acked / first)
    reason = page.inner_text("#kpns-canary-reason")
    # The abort time in the marketer's zone (the browser's, Europe/Paris),
    # as every time on the page; the stored reason (the API's) is in UTC.
    paris = later.astimezone(zoneinfo.ZoneInfo(base.ZONE))
    assert reason == f"Wave 1: delivery rate {rate}% < 90%: aborted at {paris:%H:%M}"
    assert orm(Campaign.objects.get).canary_reason.endswith(f"{later:%H:%M} UTC")
    assert paris.strftime("%H:%M") != later.strftime("%H:%M")
    row = page.inner_text('#wave-stats tr[data-wave="1"]')
    assert "failed" in row and "threshold ≥ 90%" in row
    assert not page.is_visible("button[value=promote]")
    assert page_width(page) <= WIDTH
    page.locator("#kpns-canary").scroll_into_view_if_needed()
    shot(page, "console-canary-abort")
