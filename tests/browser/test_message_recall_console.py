"""Recall and update from a message's page in a real browser (Debian's
Chromium) as an administrator, at 1366 x 900: the buttons, the update form
and the recall confirmation with their counts, then the page again with
the result. Full page screenshots var/screenshots/console-message-update.png,
console-message-recall.png and console-message-recalled.png."""

import pytest
from django.contrib.auth.models import User

from devices.delivery import pushes
from devices.models import Delivery, DeliveryStatus, Message
from tests.browser import test_console as base
from tests.factories import make_app, make_device

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

console = base.console
WIDTH, page_width, shot = base.WIDTH, base.page_width, base.shot


def sent_push(received):
    app = make_app(name="Shop app")
    devices = [make_device(app)[0] for _ in range(5)]
    message, _ = pushes.push_to_devices(
        app=app, device_ids=[d.pk for d in devices], title="Order shipped"
    )
    Delivery.objects.filter(device__in=devices[:received]).update(
        status=DeliveryStatus.DELIVERED
    )
    User.objects.create_superuser("boss", "", "pw-boss-123")
    return message.pk


@pytest.mark.timeout(180)
def test_update_then_recall_from_the_message_page(console, orm):
    message_id = orm(sent_push, 3)
    page = console
    page.goto(f"{page.base}/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools", timeout=10_000)
    url = f"{page.base}/admin/devices/message/{message_id}/change/"
    page.goto(url)

    page.click("#kpns-update-sent")
    page.wait_for_selector("#kpns-update-counts")
    counts = page.inner_text("#kpns-update-counts")
    assert "Order shipped: 3 device(s) that have it will be updated" in counts
    assert "2 not yet sent will receive the new content" in counts
    page.fill("#id_title", "Order delayed")
    page.fill("#id_body", "Now arriving Tuesday")
    assert page_width(page) <= WIDTH
    shot(page, "console-message-update")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist li")
    assert page.url == url
    assert "Order delayed: updated. 3 device(s)" in page.inner_text(".messagelist")
    assert orm(Message.objects.get, pk=message_id).body == "Now arriving Tuesday"

    page.click("#kpns-recall")
    page.wait_for_selector("#confirm-objects")
    text = page.inner_text("#content")
    assert "3 device(s) that have it will be told to remove it" in text
    assert "2 not yet sent will never be" in text
    shot(page, "console-message-recall")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist li")
    assert page.url == url
    assert "Order delayed: recalled. 3 device(s)" in page.inner_text(".messagelist")
    assert "0 device(s) acknowledged a recall, 0 an update" in page.inner_text(
        "#content"
    )
    assert page_width(page) <= WIDTH
    shot(page, "console-message-recalled")
    assert orm(Message.objects.filter(control="recall").count) == 1
    assert orm(Delivery.objects.filter(status=DeliveryStatus.CANCELLED).count) == 2
