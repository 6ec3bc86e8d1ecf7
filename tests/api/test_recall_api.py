"""POST /messages/{id}/recall|update and /campaigns/{id}/recall|update."""

import pytest
from django.utils import timezone

from campaigns.scheduler import send_due
from devices.delivery import pushes
from devices.models import Delivery, DeliveryStatus, Device, Message
from tests.api.test_campaigns_api import create
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db


def _sent_to(app, *devices, title="Wrong price"):
    message, _ = pushes.push_to_devices(
        app=app, device_ids=[d.pk for d in devices], title=title
    )
    return message


def test_recall_cancels_the_unsent_and_queues_a_recall_for_who_has_it(api, app):
    had, _ = make_device(app)
    waiting, _ = make_device(app)
    message = _sent_to(app, had, waiting)
    Delivery.objects.filter(device=had).update(status=DeliveryStatus.DELIVERED)
    answer = api.post(f"/api/v1/messages/{message.pk}/recall")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["id"], body["cancelled"], body["targets"]) == (
        str(message.pk),
        1,
        1,
    )
    control = Message.objects.get(pk=body["control_id"])
    assert (control.control, control.control_of_id) == ("recall", message.pk)
    assert list(control.deliveries.values_list("device_id", "seq")) == [(had.pk, 2)]
    assert Delivery.objects.get(device=waiting).status == DeliveryStatus.CANCELLED
    status = api.get(f"/api/v1/messages/{message.pk}").json()
    assert status["counts"]["cancelled"] == 1
    assert (status["recalled"], status["updated"]) == (0, 0)  # not acked yet


def test_update_changes_the_message_and_refuses_unknown_or_empty_bodies(api, app):
    device, _ = make_device(app)
    message = _sent_to(app, device)
    answer = api.post(
        f"/api/v1/messages/{message.pk}/update", {"title": "Right price", "body": "9"}
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["targets"] == 0  # still pending, offline: no frame needed
    message.refresh_from_db()
    assert (message.title, message.body) == ("Right price", "9")
    for bad in ({}, {"priority": "high"}, {"title": ""}, {"url": "not a url"}):
        refused = api.post(f"/api/v1/messages/{message.pk}/update", bad)
        assert refused.status_code == 400, bad
        assert refused["Content-Type"] == "application/problem+json"
    message.refresh_from_db()
    assert message.title == "Right price"


def test_another_apps_message_and_a_control_message_are_404(api, app, other_app):
    foreign = _sent_to(other_app, make_device(other_app)[0])
    assert api.post(f"/api/v1/messages/{foreign.pk}/recall").status_code == 404
    mine = _sent_to(app, make_device(app)[0])
    Device.objects.update(node="n1")  # online: the recall is queued
    control_id = api.post(f"/api/v1/messages/{mine.pk}/recall").json()["control_id"]
    assert api.post(f"/api/v1/messages/{control_id}/recall").status_code == 404


def test_recall_needs_the_push_send_scope(app):
    from tests.api.conftest import ApiClient

    message = _sent_to(app, make_device(app)[0])
    reader = ApiClient(make_api_key(app, scopes=["stats:read"])[1])
    answer = reader.post(f"/api/v1/messages/{message.pk}/recall")
    assert answer.status_code == 403
    assert "push:send" in answer.json()["detail"]


def test_campaign_recall_and_update_act_on_its_messages(api, app):
    make_device(app, tags=["vip"])
    make_device(app, tags=["vip"])
    created = create(api)
    draft_recall = api.post(f"/api/v1/campaigns/{created['id']}/recall")
    assert draft_recall.status_code == 409
    assert api.post(f"/api/v1/campaigns/{created['id']}/send").status_code == 200
    send_due(now=timezone.now())
    updated = api.post(
        f"/api/v1/campaigns/{created['id']}/update", {"title": "Spring sale 2"}
    )
    assert updated.status_code == 200, updated.content
    assert updated.json()["messages"] == 1
    assert set(
        Message.objects.filter(campaign_link__isnull=False).values_list(
            "title", flat=True
        )
    ) == {"Spring sale 2"}
    recalled = api.post(f"/api/v1/campaigns/{created['id']}/recall")
    assert recalled.status_code == 200, recalled.content
    assert recalled.json() == {"messages": 1, "cancelled": 2, "targets": 0}
    assert not Delivery.objects.filter(status=DeliveryStatus.PENDING).exists()


def test_an_update_after_a_recall_is_a_409_that_changes_nothing(api, app):
    device, _ = make_device(app)
    message = _sent_to(app, device)
    Delivery.objects.filter(device=device).update(status=DeliveryStatus.DELIVERED)
    assert api.post(f"/api/v1/messages/{message.pk}/recall").json()["targets"] == 1
    refused = api.post(f"/api/v1/messages/{message.pk}/update", {"title": "Oops"})
    assert refused.status_code == 409, refused.content
    assert refused["Content-Type"] == "application/problem+json"
    assert "recalled" in refused.json()["detail"]
    message.refresh_from_db()
    assert message.title == "Wrong price"
    assert not Message.objects.filter(control="update").exists()


def test_a_campaign_update_after_a_recall_is_a_409_that_changes_nothing(api, app):
    make_device(app, tags=["vip"])
    created = create(api)
    assert api.post(f"/api/v1/campaigns/{created['id']}/send").status_code == 200
    send_due(now=timezone.now())
    Delivery.objects.update(status=DeliveryStatus.DELIVERED)
    assert api.post(f"/api/v1/campaigns/{created['id']}/recall").json()["targets"] == 1
    refused = api.post(
        f"/api/v1/campaigns/{created['id']}/update", {"title": "Spring sale 2"}
    )
    assert refused.status_code == 409, refused.content
    titles = Message.objects.filter(campaign_link__isnull=False).values_list(
        "title", flat=True
    )
    assert "Spring sale 2" not in set(titles)
    assert not Message.objects.filter(control="update").exists()
