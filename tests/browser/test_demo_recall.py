"""The demo page (a virtual device in Debian's Chromium, JSON or KMPP) and
a real Daphne: an update rewrites the card in place, a recall removes it,
and both are acknowledged. Full page screenshots
var/screenshots/demo-recall-before.png (two cards) and
demo-recall-after.png (one card rewritten, the other gone)."""

import time

import httpx
import pytest

from devices.delivery import counters
from tests.browser.test_e2ee_browser import SCREENSHOTS
from tests.e2e.servers import daphne_servers
from tests.factories import make_api_key, make_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
]

TAG = "demo-recall"


def setup_world():
    app = make_app(name="Demo app")
    return make_api_key(app, scopes=["push:send"])[1]


def wait_for(check, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def card(demo, message_id):
    return demo.query_selector(f'#feed .card[data-id="{message_id}"]')


@pytest.mark.timeout(240)
@pytest.mark.parametrize("encoding", ["json", "kmpp"])
def test_the_demo_page_rewrites_an_updated_card_and_removes_a_recalled_one(
    browser, orm, redis_url, tmp_path, encoding
):
    key = orm(setup_world)
    with daphne_servers(1, redis_url=redis_url, tmp_path=tmp_path) as (server,):
        context = browser.new_context(viewport={"width": 900, "height": 900})
        demo = context.new_page()
        demo.goto(f"{server.http_url}/demo/?tags={TAG}&encoding={encoding}")
        demo.wait_for_selector('#state[data-state="connected"]', timeout=15_000)
        api = httpx.Client(
            base_url=server.http_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

        def push(title, body):
            answer = api.post(
                "/api/v1/pushes",
                json={"audience": {"tags_any": [TAG]}, "title": title, "body": body},
            )
            assert answer.status_code == 202, answer.text
            return answer.json()["message_id"]

        def acked(message_id):
            return orm(counters.message_counts, message_id)["delivered"] == 1

        kept = push("Spring sale: 50% off", "Today only")
        wrong = push("Free shipping", "Sent by mistake")
        for message_id in (kept, wrong):
            demo.wait_for_selector(f'.card[data-id="{message_id}"]', timeout=10_000)
            wait_for(lambda m=message_id: acked(m), what="the push's ack")
        assert demo.inner_text("#count") == "(2)"
        # No image nor link was sent: the card shows none.
        assert not card(demo, kept).query_selector("img, a")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        demo.screenshot(path=str(SCREENSHOTS / "demo-recall-before.png"))

        update = api.post(
            f"/api/v1/messages/{kept}/update",
            json={"title": "Spring sale: 15% off", "body": "Today and tomorrow"},
        )
        assert update.status_code == 200, update.text
        demo.wait_for_selector(f'.card[data-id="{kept}"][data-updated]', timeout=10_000)
        recall = api.post(f"/api/v1/messages/{wrong}/recall")
        assert recall.status_code == 200, recall.text
        demo.wait_for_selector(
            f'.card[data-id="{wrong}"]', state="detached", timeout=10_000
        )
        for control in (update.json(), recall.json()):
            assert control["targets"] == 1
            wait_for(lambda c=control: acked(c["control_id"]), what="control ack")

        cards = demo.query_selector_all("#feed .card")
        assert [c.get_attribute("data-id") for c in cards] == [kept]
        rewritten = card(demo, kept)
        assert rewritten.query_selector(".title").inner_text() == (
            "Spring sale: 15% off"
        )
        assert rewritten.query_selector(".body").inner_text() == "Today and tomorrow"
        assert rewritten.get_attribute("data-seq") == "1"
        assert rewritten.get_attribute("data-updated") == "3"
        assert demo.inner_text("#last-seq") == "4"
        assert demo.inner_text("#count") == "(1)"
        log = demo.inner_text("#log")
        assert f"update #3: push {kept} now “Spring sale: 15% off”" in log
        assert f"recall #4: push {wrong} removed" in log
        demo.screenshot(path=str(SCREENSHOTS / "demo-recall-after.png"))
        api.close()
        context.close()
