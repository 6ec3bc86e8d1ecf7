"""The marketer's console in a real browser (Debian's Chromium), as a user in
the Marketer role, at 1366 x 900: compose with the preview, the live
audience count, the everyone confirmation, the scheduled campaign's edit
and unschedule path. Each saves a full-page screenshot under
var/screenshots/."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Campaign, CampaignStatus
from campaigns.roles import marketer_group
from devices.models import Device
from tests.e2e.servers import ROOT
from tests.factories import make_app, make_device

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = ROOT / "var" / "screenshots"
WIDTH, HEIGHT = 1366, 900
ZONE = "Europe/Paris"


def world(devices=0, vip=0, online=0):
    app = make_app(name="Shop app")
    for i in range(devices):
        tags = ["vip"] if i < vip else ["newsletter"]
        device, _ = make_device(app, tags=tags, alias=f"user-{i}")
        if i < online:
            Device.objects.filter(pk=device.pk).update(node="n1")
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(marketer_group())
    return app


@pytest.fixture
def console(browser, live_server):
    context = browser.new_context(
        viewport={"width": WIDTH, "height": HEIGHT}, timezone_id=ZONE
    )
    page = context.new_page()
    page.base = live_server.url

    def login():
        page.goto(f"{page.base}/admin/login/")
        page.fill("#id_username", "mary")
        page.fill("#id_password", "pw-mary-123")
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools", timeout=10_000)

    page.login = login
    yield page
    context.close()


def shot(page, name) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # From the top: sticky panels (the admin's sidebar, the preview) would
    # otherwise be drawn where the last scroll left them.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    return path


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.mark.timeout(120)
def test_compose_with_the_live_preview(console, orm):
    app = orm(world, devices=3)
    page = console
    page.login()
    assert ZONE in page.text_content("#kpns-timezone")
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    page.select_option("#id_app", str(app.pk))
    page.fill("#id_name", "Flash sale")
    page.fill("#id_title", "Flash sale: 30% off")
    page.fill("#id_body", "Today only, for our best customers.")
    page.fill("#id_image", f"{page.base}/static/kpns/demo-sale.svg")
    page.fill("#id_url", "https://shop.example/flash")
    page.fill("#id_data", '{"coupon": "FLASH30", "screen": "sale", "x": 1, "y": 2}')
    assert page.inner_text("#preview-title") == "Flash sale: 30% off"
    assert page.inner_text("#preview-body") == "Today only, for our best customers."
    assert page.inner_text("#preview-url") == "shop.example"
    assert page.get_attribute("#preview-image", "src").endswith("demo-sale.svg")
    # The first data keys, not all of them.
    assert page.inner_text("#preview-data").split() == [
        "coupon", "FLASH30", "screen", "sale", "x", "1",
    ]  # fmt: skip
    for platform in ("ios", "web", "android"):
        page.click(f'#kpns-preview button[data-platform="{platform}"]')
        assert page.get_attribute("#preview-mock", "data-platform") == platform
    assert page.input_value("#id_ttl_seconds") == "7d"
    page.wait_for_function(
        "document.getElementById('est-matching').textContent === '3'"
    )
    assert page_width(page) <= WIDTH
    shot(page, "console-compose-preview")


@pytest.mark.timeout(120)
def test_live_audience_count_follows_the_conditions(console, orm):
    app = orm(world, devices=5, vip=2, online=1)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    page.select_option("#id_app", str(app.pk))
    page.wait_for_function(
        "document.getElementById('est-matching').textContent === '5'"
    )
    assert "all 5 devices" in page.inner_text("#est-everyone")
    page.click("#kpns-add-group")  # the builder: tag has ...
    page.fill("#kpns-g0-r0-value", "vip")
    # A condition typed under "All devices" means a filter was meant.
    page.wait_for_function(
        "document.getElementById('est-matching').textContent === '2'"
    )
    assert page.input_value("#id_audience_kind") == "filter"
    assert page.inner_text("#est-online") == "1"
    assert not page.is_visible("#est-everyone")
    page.fill("#kpns-g0-r0-value", "v i p!")
    page.wait_for_selector("#est-error:not([hidden])")
    assert "no device can have the tag" in page.inner_text("#est-error")
    page.fill("#kpns-g0-r0-value", "vip")
    # The count was 2 before the error too: wait for the answer to clear it.
    page.wait_for_selector("#est-error", state="hidden")
    assert page.inner_text("#est-matching") == "2"
    shot(page, "console-live-count")


@pytest.mark.timeout(120)
def test_everyone_is_confirmed_before_it_is_saved(console, orm):
    app = orm(world, devices=4)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    page.select_option("#id_app", str(app.pk))
    page.fill("#id_name", "Everyone")
    page.fill("#id_title", "Hello all")
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote")
    error = page.inner_text(".field-confirm_everyone")
    assert "This campaign goes to every device of the app (4)" in error
    assert orm(Campaign.objects.count) == 0
    shot(page, "console-everyone-confirmation")
    page.check("#id_confirm_everyone")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert "/change/" in page.url  # back on the campaign, not the list
    assert orm(Campaign.objects.get).audience_kind == "all"


def scheduled_campaign(app):
    campaign = lifecycle.campaign_create(
        app=app, name="Weekend", title="Weekend deals", audience_kind="filter",
        audience={"tags_any": ["vip"]},
    )  # fmt: skip
    return lifecycle.campaign_schedule(
        campaign=campaign, send_at=timezone.now() + timedelta(days=2)
    )


@pytest.mark.timeout(120)
def test_a_scheduled_campaign_is_edited_then_unscheduled(console, orm):
    app = orm(world, devices=3, vip=1)
    campaign = orm(scheduled_campaign, app)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/")
    assert page_width(page) <= WIDTH
    assert "Scheduled" in page.inner_text("#result_list")
    shot(page, "console-campaign-list")
    page.goto(f"{page.base}/admin/campaigns/campaign/{campaign.pk}/change/")
    page.fill("#id_title", "Weekend deals, extended")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    edited = orm(Campaign.objects.get, pk=campaign.pk)
    assert edited.status == CampaignStatus.SCHEDULED
    assert edited.title == "Weekend deals, extended"
    shot(page, "console-scheduled-edit")
    page.click("#submit-unschedule")
    page.wait_for_selector(".messagelist li")
    assert "unscheduled, back to a draft" in page.inner_text(".messagelist")
    assert page.url.endswith(f"/{campaign.pk}/change/")
    assert orm(Campaign.objects.get, pk=campaign.pk).status == CampaignStatus.DRAFT
    assert page.is_visible("#submit-schedule")
    shot(page, "console-unscheduled-draft")
    page.goto(f"{page.base}/admin/devices/device/")
    assert page_width(page) <= WIDTH
    shot(page, "console-device-list")
