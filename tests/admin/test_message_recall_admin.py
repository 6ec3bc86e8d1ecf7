"""Recall and update from a message's own page (a push sent by the API or
a test push), with the campaign page's confirmation and counts: the page
offers them to who may change messages, the confirmation names what it
will touch, nothing happens before it, then the page comes back."""

import pytest

from devices.delivery import pushes
from devices.models import Delivery, DeliveryStatus, Device, Message
from tests.admin.test_admin_actions import action, boss, hidden_fields, marketer
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

__all__ = ["boss", "marketer"]

MESSAGES = "/admin/devices/message/"


def sent(devices, had: int, title="Wrong price"):
    """A push to the devices, `had` of them acknowledged it (and online)."""
    message, _ = pushes.push_to_devices(
        app=devices[0].app, device_ids=[d.pk for d in devices], title=title
    )
    Delivery.objects.filter(device__in=devices[:had]).update(
        status=DeliveryStatus.DELIVERED
    )
    return message


def test_recall_from_the_message_page_asks_with_the_counts(client, boss):
    app = make_app()
    devices = [make_device(app)[0] for _ in range(4)]
    message = sent(devices, had=3)
    page = client.get(f"{MESSAGES}{message.pk}/change/").content.decode()
    assert 'id="kpns-recall"' in page and 'id="kpns-update-sent"' in page
    assert "0 device(s) acknowledged a recall, 0 an update" in page

    asked = client.post(MESSAGES, action("recall", message, return_to="change"))
    assert asked.status_code == 200
    shown = asked.content.decode()
    assert "Wrong price: 3 device(s) that have it will be told to remove it" in shown
    assert "1 not yet sent will never be" in shown
    assert not Message.objects.filter(control="recall").exists()

    done = client.post(MESSAGES, hidden_fields(shown))
    assert done.status_code == 302
    assert done["Location"] == f"{MESSAGES}{message.pk}/change/"
    back = client.get(done["Location"]).content.decode()
    assert "Wrong price: recalled. 3 device(s) are told to remove it" in back
    control = Message.objects.get(control="recall")
    assert control.control_of_id == message.pk
    assert set(control.deliveries.values_list("device_id", flat=True)) == {
        d.pk for d in devices[:3]
    }
    assert Delivery.objects.filter(status=DeliveryStatus.CANCELLED).count() == 1
    # The recall's own page offers neither: it cannot be recalled.
    control_page = client.get(f"{MESSAGES}{control.pk}/change/").content.decode()
    assert 'id="kpns-recall"' not in control_page


def test_update_from_the_message_page_shows_the_counts_then_rewrites(client, boss):
    app = make_app()
    devices = [make_device(app)[0] for _ in range(3)]
    message = sent(devices, had=1)
    asked = client.post(MESSAGES, action("update_sent", message, return_to="change"))
    shown = asked.content.decode()
    assert "1 device(s) that have it will be updated" in shown
    assert "2 not yet sent will receive the new content" in shown
    empty = client.post(MESSAGES, {**action("update_sent", message), "apply": "1"})
    assert "Give at least one new value." in empty.content.decode()
    assert Message.objects.get(pk=message.pk).title == "Wrong price"
    done = client.post(
        MESSAGES,
        {**hidden_fields(shown), "title": "Right price"},
        follow=True,
    )
    assert done.redirect_chain[-1][0] == f"{MESSAGES}{message.pk}/change/"
    assert "Right price: updated. 1 device(s) that have it" in done.content.decode()
    assert Message.objects.get(pk=message.pk).title == "Right price"
    update = Message.objects.get(control="update")
    assert list(update.deliveries.values_list("device_id", flat=True)) == [
        devices[0].pk
    ]
    assert Device.objects.count() == 3


def test_a_marketer_sees_messages_but_cannot_recall_them(client, marketer):
    app = make_app()
    message = sent([make_device(app)[0]], had=1)
    page = client.get(f"{MESSAGES}{message.pk}/change/").content.decode()
    assert 'id="kpns-recall"' not in page
    refused = client.post(MESSAGES, action("recall", message, post="yes"))
    assert refused.status_code == 403
    assert not Message.objects.filter(control="recall").exists()
