"""A Marketer builds "(tag vip OR platform ios) AND locale fr" in the audience
builder of a real browser, watches the live count follow, saves it as a
segment, makes a campaign from the segment and sends it: the connected
devices in it get it (a demo page in the browser, an iOS socket client),
the others do not. Screenshots: console-audience-builder.png,
console-saved-segment.png (1366 x 900, full page)."""

import asyncio
import threading

import pytest
from django.contrib.auth.models import User

from campaigns.models import Campaign
from campaigns.roles import marketer_group
from campaigns.selectors import campaign_stats
from devices.models import Device, Segment
from tests.browser.test_console import HEIGHT, SCREENSHOTS, WIDTH, ZONE
from tests.browser.test_demo_campaign import wait_for
from tests.e2e.servers import daphne_servers, scheduler_process
from tests.factories import make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
]


def setup_world():
    """Devices not in a browser: an iOS phone in French and one in German
    (connected by socket clients), and two offline Android phones."""
    app = make_app(name="Shop app")
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(marketer_group())
    tokens = {
        "ios_fr": make_device(app, platform="ios", locale="fr")[1],
        "ios_de": make_device(app, platform="ios", locale="de-DE")[1],
    }
    make_device(app, platform="android", locale="fr", tags=["vip"])  # in, offline
    make_device(app, platform="android", locale="fr")  # out, offline
    return app, tokens


class SocketPhones:
    """Socket clients on their own event loop, driven from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout=20):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def count(page, matching, online):
    page.wait_for_function(
        "([m, o]) => document.getElementById('est-matching').textContent === m"
        " && document.getElementById('est-online').textContent === o",
        arg=[str(matching), str(online)],
        timeout=10_000,
    )


def shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.mark.timeout(300)
def test_marketer_builds_saves_and_sends_to_a_segment(
    browser, orm, redis_url, tmp_path
):
    app, tokens = orm(setup_world)
    phones = SocketPhones()
    with (
        daphne_servers(1, redis_url=redis_url, tmp_path=tmp_path) as (server,),
        scheduler_process(redis_url=redis_url, tmp_path=tmp_path),
    ):
        base = server.http_url
        # Two web devices: demo pages in French and in English, both vip.
        demos = {}
        for locale in ("fr-FR", "en-US"):
            context = browser.new_context(locale=locale)
            demo = context.new_page()
            demo.goto(f"{base}/demo/?app={app.client_key}&tags=vip")
            demo.wait_for_selector('#state[data-state="connected"]', timeout=15_000)
            demos[locale] = demo
        clients = {
            name: DeviceClient(server.ws_url, token) for name, token in tokens.items()
        }
        for client in clients.values():
            phones.run(client.connect())
        wait_for(
            lambda: orm(Device.objects.filter(node__isnull=False).count) == 4,
            what="4 devices online",
        )

        context = browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT}, timezone_id=ZONE
        )
        page = context.new_page()
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", "mary")
        page.fill("#id_password", "pw-mary-123")
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools", timeout=10_000)

        # The builder: no JSON typed anywhere.
        page.goto(f"{base}/admin/devices/segment/add/")
        page.select_option("#id_app", str(app.pk))
        page.fill("#id_name", "VIP or iOS, French")
        page.fill("#id_description", "Paris launch: VIPs and iPhone users in French.")
        assert not page.is_visible("#id_audience_json")  # folded: advanced view
        page.click("#kpns-add-group")
        page.fill("#kpns-g0-r0-value", "vip")
        count(page, 3, 2)  # both demo pages and the offline vip phone
        page.select_option("#kpns-g0-join", "any")
        page.click("#kpns-g0-add")
        page.select_option("#kpns-g0-r1-field", "platform")
        page.select_option("#kpns-g0-r1-value", "ios")
        count(page, 5, 4)  # vip OR ios
        page.click("#kpns-add-group")
        page.select_option("#kpns-g1-r0-field", "locale")
        page.fill("#kpns-g1-r0-value", "fr")
        assert page.input_value("#kpns-join-groups-1") == "all"  # AND
        count(page, 3, 2)  # (vip OR ios) AND fr
        shot(page, "console-audience-builder")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success", timeout=10_000)
        segment = orm(Segment.objects.get)
        assert segment.spec == {
            "where": {
                "all": [
                    {"any": [
                        {"field": "tag", "op": "eq", "value": "vip"},
                        {"field": "platform", "op": "eq", "value": "ios"},
                    ]},
                    {"all": [{"field": "locale", "op": "eq", "value": "fr"}]},
                ]
            }
        }  # fmt: skip
        # The list counts it on demand.
        page.wait_for_function(
            "document.querySelector('.kpns-segment-count').textContent === '3 / 2'"
        )

        # A campaign from the segment.
        page.goto(f"{base}/admin/devices/segment/{segment.pk}/change/")
        page.wait_for_selector("#kpns-g1-r0-value")  # the builder shows it again
        assert page.input_value("#kpns-g1-r0-value") == "fr"
        count(page, 3, 2)
        page.click("#kpns-new-campaign")
        page.wait_for_selector("#id_title")
        assert page.input_value("#id_segment") == str(segment.pk)
        assert page.input_value("#id_audience_kind") == "filter"
        count(page, 3, 2)
        page.fill("#id_name", "Paris launch")
        page.fill("#id_title", "Bonjour Paris")
        page.fill("#id_body", "La collection arrive.")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success", timeout=10_000)
        campaign = orm(Campaign.objects.get)
        assert campaign.audience == {"segment": segment.pk}
        campaign_url = page.url

        page.goto(f"{base}/admin/devices/segment/{segment.pk}/change/")
        assert "Paris launch" in page.inner_text("#kpns-segment-used")
        count(page, 3, 2)
        shot(page, "console-saved-segment")

        page.goto(campaign_url)
        page.click("#submit-send_now")
        page.wait_for_selector(".messagelist li", timeout=10_000)
        assert "queued to send now" in page.inner_text(".messagelist")
        card = demos["fr-FR"].wait_for_selector(".card", timeout=10_000)
        assert card.query_selector(".title").inner_text() == "Bonjour Paris"
        push = phones.run(clients["ios_fr"].receive_push(timeout=10))
        assert push.title == "Bonjour Paris"
        phones.run(clients["ios_fr"].ack(push))
        with pytest.raises(asyncio.TimeoutError):
            phones.run(clients["ios_de"].receive_push(timeout=1.5))
        assert demos["en-US"].query_selector(".card") is None

        def delivered():
            stats = orm(lambda: campaign_stats(Campaign.objects.get(pk=campaign.pk)))
            return stats if stats["delivered"] == 2 else None

        stats = wait_for(delivered, timeout=15, what="2 delivered")
        assert stats["targeted"] == 3  # the offline vip phone gets it later
        for client in clients.values():
            phones.run(client.close())
        context.close()
    phones.stop()
