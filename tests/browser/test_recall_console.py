"""Recall and update from the campaign page in a real browser (Debian's
Chromium) as a Marketer, at 1366 x 900: the confirmation with the counts it
will touch, then the result. Full page screenshots
var/screenshots/console-recall.png (the confirmation) and
console-recall-update.png (the update form with its counts)."""

import pytest
from django.utils import timezone

from campaigns import lifecycle, sender
from campaigns.models import Campaign
from devices.models import Delivery, DeliveryStatus, Message
from tests.browser import test_console as base

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

console = base.console  # the Marketer's browser page, logged in by login()
WIDTH, page_width, world, shot = base.WIDTH, base.page_width, base.world, base.shot


def sent_campaign(app_id, received):
    campaign = lifecycle.campaign_create(
        app_id=app_id, name="Spring sale", title="Everything 50% off"
    )
    sender.campaign_send_now(campaign=campaign)
    sender.send_due(now=timezone.now())
    rows = Delivery.objects.order_by("pk").values_list("pk", flat=True)[:received]
    Delivery.objects.filter(pk__in=list(rows)).update(status=DeliveryStatus.DELIVERED)
    return campaign.pk


@pytest.mark.timeout(180)
def test_update_then_recall_from_the_campaign_page(console, orm):
    app = orm(world, devices=12)
    campaign_id = orm(sent_campaign, app.pk, 8)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/{campaign_id}/change/")

    page.click("#kpns-update-sent")
    page.wait_for_selector("#kpns-update-counts")
    counts = page.inner_text("#kpns-update-counts")
    assert "8 device(s) that have it will be updated" in counts
    assert "4 not yet sent will receive the new content" in counts
    page.fill("#id_title", "Everything 40% off")
    assert page_width(page) <= WIDTH
    shot(page, "console-recall-update")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist li")
    assert "Spring sale: updated. 8 device(s)" in page.inner_text(".messagelist")
    sent = orm(Message.objects.get, campaign_link__campaign_id=campaign_id)
    assert sent.title == "Everything 40% off"

    page.click("#kpns-recall")
    page.wait_for_selector("#confirm-objects")
    text = page.inner_text("#content")
    assert "8 device(s) that have it will be told to remove it" in text
    assert "4 not yet sent will never be" in text
    assert page_width(page) <= WIDTH
    shot(page, "console-recall")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist li")
    assert "Spring sale: recalled. 8 device(s)" in page.inner_text(".messagelist")
    assert orm(Message.objects.filter(control="recall").count) == 1
    assert orm(Delivery.objects.filter(status=DeliveryStatus.CANCELLED).count) == 4
    assert orm(Campaign.objects.get, pk=campaign_id).status == "sent"
