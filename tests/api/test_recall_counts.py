"""Recalls and updates counted on their own: webhook events sent to a real
local receiver, the campaign's stats and the admin's results CSV."""

import csv
import io
import json

import pytest
from django.utils import timezone

from campaigns import lifecycle, sender
from campaigns.models import Campaign
from devices.delivery import pushes, recall, receipts
from devices.integrations import webhooks
from devices.models import Delivery, DeliveryStatus, Device, Message, WebhookDelivery
from tests.admin.test_admin_actions import marketer
from tests.api.conftest import ApiClient
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db

__all__ = ["marketer"]


@pytest.fixture
def receiver(receiver, settings):
    """The local receiver, let in by the allow-list (on-premise)."""
    settings.KPNS = {**settings.KPNS, "WEBHOOK_ALLOWED_NETWORKS": ["127.0.0.1/32"]}
    return receiver


def ack(*deliveries: Delivery) -> None:
    receipts.receipts_record(receipts.Receipts(delivered=[d.pk for d in deliveries]))


def control_delivery(control_id, device) -> Delivery:
    return Delivery.objects.get(message_id=control_id, device=device)


def had_it(app, *devices, title="Wrong price"):
    """A push that every device acknowledged, the devices online."""
    message, _ = pushes.push_to_devices(
        app=app, device_ids=[d.pk for d in devices], title=title
    )
    ack(*Delivery.objects.filter(message=message))
    Device.objects.filter(pk__in=[d.pk for d in devices]).update(node="n1")
    return message


def test_acked_recalls_and_updates_reach_the_receiver_as_their_own_events(
    app, receiver
):
    endpoint = webhooks.webhook_endpoint_create(
        app=app,
        url=receiver.url,
        events=["message.delivered", "message.recalled", "message.updated"],
    )
    alice, _ = make_device(app, alias="alice")
    bob, _ = make_device(app, alias="bob")
    message = had_it(app, alice, bob)
    updated = recall.message_update(message=message, changes={"title": "Right"})
    ack(control_delivery(updated.control_id, alice))
    recalled = recall.message_recall(message=message)
    ack(control_delivery(recalled.control_id, bob))
    # Acking again changes nothing and queues nothing.
    ack(control_delivery(recalled.control_id, bob))

    now = timezone.now()
    assert webhooks.dispatch_due(now=now) == 4
    calls = sorted(
        (json.loads(c.body) for c in receiver.calls),
        key=lambda body: (body["type"], body["data"]["alias"]),
    )
    assert [(c["type"], c["data"]["alias"]) for c in calls] == [
        ("message.delivered", "alice"),
        ("message.delivered", "bob"),
        ("message.recalled", "bob"),
        ("message.updated", "alice"),
    ]
    # Recall and update name the message they change, and their carrier;
    # no message.delivered names a control message.
    assert all(c["data"]["message_id"] == str(message.pk) for c in calls)
    recalled_event, updated_event = calls[2]["data"], calls[3]["data"]
    assert recalled_event["control_id"] == str(recalled.control_id)
    assert updated_event["control_id"] == str(updated.control_id)
    assert updated_event["seq"] == 2 and recalled_event["seq"] == 3
    assert "control_id" not in calls[0]["data"]
    headers = {c.headers["KPNS-Event"] for c in receiver.calls}
    assert headers == {"message.delivered", "message.recalled", "message.updated"}
    assert all(
        webhooks.signature_verify(
            endpoint.secret, c.body, c.headers["KPNS-Signature"], now=now.timestamp()
        )
        for c in receiver.calls
    )


def test_an_endpoint_for_recalls_only_gets_only_recalls(app):
    webhooks.webhook_endpoint_create(
        app=app, url="https://example.com/h", events=["message.recalled"]
    )
    device, _ = make_device(app)
    message = had_it(app, device)
    updated = recall.message_update(message=message, changes={"title": "Right"})
    ack(control_delivery(updated.control_id, device))
    assert not WebhookDelivery.objects.exists()
    recalled = recall.message_recall(message=message)
    ack(control_delivery(recalled.control_id, device))
    [row] = WebhookDelivery.objects.all()
    assert row.event == "message.recalled"
    assert row.payload["data"]["message_id"] == str(message.pk)


def test_the_api_subscribes_to_the_new_events(app):
    key = ApiClient(make_api_key(app, scopes=["webhooks:write"])[1])
    answer = key.post(
        "/api/v1/webhooks",
        {"url": "https://example.com/h", "events": ["message.updated"]},
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["events"] == ["message.updated"]


def sent_campaign(app):
    campaign = lifecycle.campaign_create(app=app, name="Spring", title="Wrong price")
    sender.campaign_send_now(campaign=campaign)
    sender.send_due(now=timezone.now())
    return Campaign.objects.get(pk=campaign.pk)


def test_campaign_stats_and_the_csv_count_recalls_and_updates_apart(
    app, client, marketer
):
    devices = [make_device(app, alias=f"user-{n}")[0] for n in range(3)]
    campaign = sent_campaign(app)
    ack(*Delivery.objects.filter(device__in=devices[:2]))
    Device.objects.filter(pk__in=[d.pk for d in devices[:2]]).update(node="n1")
    [message] = Message.objects.filter(campaign_link__campaign=campaign)
    update = recall.message_update(message=message, changes={"title": "Right"})
    ack(*Delivery.objects.filter(message_id=update.control_id))  # both
    withdrawn = recall.message_recall(message=message)
    ack(control_delivery(withdrawn.control_id, devices[0]))  # one of two

    api = ApiClient(make_api_key(app, scopes=["stats:read"])[1])
    stats = api.get(f"/api/v1/campaigns/{campaign.pk}/stats").json()
    assert (stats["recalled"], stats["updated"]) == (1, 2)
    assert stats["stats"]["cancelled"] == 1  # the third device never got it

    client.force_login(marketer)
    body = b"".join(
        client.get(
            f"/admin/campaigns/campaign/{campaign.pk}/results.csv"
        ).streaming_content
    ).decode()
    rows = {row["alias"]: row for row in csv.DictReader(io.StringIO(body))}
    assert list(rows) == sorted(
        rows, key=lambda a: str(next(d.pk for d in devices if d.alias == a))
    )
    assert rows["user-0"]["recalled_at"] and rows["user-0"]["updated_at"]
    assert not rows["user-1"]["recalled_at"] and rows["user-1"]["updated_at"]
    assert rows["user-2"]["status"] == DeliveryStatus.CANCELLED
    assert not rows["user-2"]["recalled_at"] and not rows["user-2"]["updated_at"]
