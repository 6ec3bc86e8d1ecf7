"""A marketer sends a campaign from the admin in a real browser; the demo page,
a virtual device in another page, shows it and reports it opened."""

import time

import pytest
from django.contrib.auth.models import User

from campaigns.models import Campaign
from campaigns.roles import marketer_group
from campaigns.selectors import campaign_stats
from tests.e2e.servers import daphne_servers, scheduler_process
from tests.factories import make_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
]

TAG = "browser-vip"


def setup_world():
    app = make_app(name="Demo app")
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(marketer_group())
    return app


def device_tags(app, device_id):
    return [tag.name for tag in app.devices.get(pk=device_id).tags.all()]


def wait_for(check, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.timeout(300)
def test_marketer_campaign_pops_up_on_the_demo_page(
    browser, orm, redis_url, tmp_path, artifacts
):
    app = orm(setup_world)

    with (
        daphne_servers(1, redis_url=redis_url, tmp_path=tmp_path) as (server,),
        scheduler_process(redis_url=redis_url, tmp_path=tmp_path),
    ):
        base = server.http_url
        # The virtual device, in its own browser context (own storage).
        device_context = browser.new_context(viewport={"width": 900, "height": 900})
        demo = device_context.new_page()
        demo.goto(f"{base}/demo/?tags={TAG}")
        demo.wait_for_selector('#state[data-state="connected"]', timeout=15_000)
        device_id = demo.inner_text("#device-id")
        assert len(device_id) == 36
        assert demo.inner_text("#tags") == TAG
        assert orm(device_tags, app, device_id) == [TAG]

        # The marketer, in another context.
        admin_context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = admin_context.new_page()
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", "mary")
        page.fill("#id_password", "pw-mary-123")
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools", timeout=10_000)

        page.goto(f"{base}/admin/campaigns/campaign/add/")
        page.select_option("#id_app", str(app.pk))
        page.fill("#id_name", "Flash sale (browser)")
        page.fill("#id_title", "Flash sale")
        page.fill("#id_body", "30% off for VIPs, today only")
        page.fill("#id_url", "https://shop.example/flash")
        page.fill("#id_image", f"{base}/static/kpns/demo-sale.svg")
        page.fill("#id_data", '{"coupon": "FLASH30"}')
        page.select_option("#id_audience_kind", "filter")
        page.click("#kpns-add-group")  # the audience builder: tag has TAG
        page.fill("#kpns-g0-r0-value", TAG)
        page.select_option("#id_priority", "high")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success", timeout=10_000)
        campaign = orm(Campaign.objects.get, name="Flash sale (browser)")

        page.goto(f"{base}/admin/campaigns/campaign/{campaign.pk}/change/")
        assert page.inner_text("#est-matching") == "1"
        assert page.inner_text("#est-online") == "1"
        started = time.monotonic()
        page.click("#submit-send_now")
        card = demo.wait_for_selector(".card", timeout=2_000)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"the push took {elapsed:.2f} s to show"
        page.wait_for_selector(".messagelist li", timeout=10_000)
        assert "queued to send now" in page.inner_text(".messagelist")

        assert card.query_selector(".title").inner_text() == "Flash sale"
        assert card.query_selector(".body").inner_text() == (
            "30% off for VIPs, today only"
        )
        assert (
            card.query_selector("img")
            .get_attribute("src")
            .endswith("/static/kpns/demo-sale.svg")
        )
        assert card.query_selector("a").get_attribute("href") == (
            "https://shop.example/flash"
        )
        message_id = orm(Campaign.objects.get, pk=campaign.pk).message_id
        assert card.get_attribute("data-id") == str(message_id)
        card.query_selector("button.open").click()
        demo.wait_for_selector(".card.opened", timeout=5_000)

        def counted():
            stats = orm(lambda: campaign_stats(Campaign.objects.get(pk=campaign.pk)))
            return stats if stats["delivered"] == 1 and stats["opened"] == 1 else None

        stats = wait_for(counted, timeout=10, what="delivered 1, opened 1")
        assert stats["targeted"] == 1

        page.goto(f"{base}/admin/campaigns/campaign/{campaign.pk}/change/")
        page.wait_for_selector("#funnel rect", timeout=10_000)
        assert page.inner_text('[data-stat="delivered"]') == "1"
        assert page.inner_text('[data-stat="opened"]') == "1"
        page.screenshot(path=str(artifacts / "admin-campaign.png"), full_page=True)
        demo.screenshot(path=str(artifacts / "demo-page.png"), full_page=True)
        device_context.close()
        admin_context.close()
