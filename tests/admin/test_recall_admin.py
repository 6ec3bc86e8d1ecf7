"""Recall from the campaign page as a Marketer: the confirmation names the
counts it will touch, nothing happens before it, then the devices that had
the push get a recall and the rest never get the push."""

import pytest
from django.utils import timezone

from campaigns import lifecycle, sender
from campaigns.models import Campaign, CampaignStatus
from devices.models import Delivery, DeliveryStatus, Device, Message
from tests.admin.test_admin_actions import CAMPAIGNS, action, hidden_fields, marketer
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

__all__ = ["marketer"]


def sent_campaign(app):
    campaign = lifecycle.campaign_create(app=app, name="Spring", title="Wrong price")
    sender.campaign_send_now(campaign=campaign)
    sender.send_due(now=timezone.now())
    return Campaign.objects.get(pk=campaign.pk)


def test_recall_asks_with_the_counts_then_recalls(client, marketer):
    app = make_app()
    devices = [make_device(app)[0] for _ in range(5)]
    campaign = sent_campaign(app)
    assert campaign.status == CampaignStatus.SENT
    # Three devices received it; two are offline and never did.
    Delivery.objects.filter(device__in=devices[:3]).update(
        status=DeliveryStatus.DELIVERED
    )
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    assert 'value="recall"' in page and "Recall…" in page

    asked = client.post(CAMPAIGNS, action("recall", campaign))
    assert asked.status_code == 200
    shown = asked.content.decode()
    assert "3 device(s) that have it will be told to remove it" in shown
    assert "2 not yet sent will never be" in shown
    assert not Message.objects.filter(control="recall").exists()

    done = client.post(CAMPAIGNS, hidden_fields(shown), follow=True)
    assert done.status_code == 200
    assert "Spring: recalled. 3 device(s) are told to remove it" in (
        done.content.decode()
    )
    control = Message.objects.get(control="recall")
    assert set(control.deliveries.values_list("device_id", flat=True)) == {
        d.pk for d in devices[:3]
    }
    assert Delivery.objects.filter(status=DeliveryStatus.CANCELLED).count() == 2
    assert Device.objects.count() == 5


def test_a_draft_offers_no_recall(client, marketer):
    app = make_app()
    campaign = lifecycle.campaign_create(app=app, name="Draft", title="t")
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    assert 'value="recall"' not in page


def test_update_shows_the_counts_then_rewrites_the_sent_content(client, marketer):
    app = make_app()
    devices = [make_device(app)[0] for _ in range(3)]
    campaign = sent_campaign(app)
    Delivery.objects.filter(device=devices[0]).update(status=DeliveryStatus.DELIVERED)
    asked = client.post(CAMPAIGNS, action("update_sent", campaign))
    assert asked.status_code == 200
    shown = asked.content.decode()
    assert "1 device(s) that have it will be updated" in shown
    assert "2 not yet sent will receive the new content" in shown
    empty = client.post(CAMPAIGNS, {**action("update_sent", campaign), "apply": "1"})
    assert "Give at least one new value." in empty.content.decode()
    done = client.post(
        CAMPAIGNS,
        {**action("update_sent", campaign), "apply": "1", "title": "Right price"},
        follow=True,
    )
    assert "Spring: updated. 1 device(s) that have it" in done.content.decode()
    sent = Message.objects.get(campaign_link__campaign=campaign)
    assert sent.title == "Right price"
    update = Message.objects.get(control="update")
    assert update.title == "Right price"
    assert list(update.deliveries.values_list("device_id", flat=True)) == [
        devices[0].pk
    ]
