"""Canary rollouts through the server API: waves and thresholds written
and read, per-wave stats, pause, resume and promote (campaigns.canary)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import canary
from campaigns.sender import send_due
from devices.models import Delivery, DeliveryStatus
from tests.factories import make_device

pytestmark = pytest.mark.django_db

CANARY = {
    "name": "Staged",
    "title": "New feature",
    "audience_kind": "all",
    "wave_percents": [10, 100],
    "wave_hold_seconds": 600,
    "canary_min_delivery_rate": 90,
    "canary_max_close_rate": 20,
    "canary_action": "abort",
}


def test_waves_and_thresholds_are_written_and_read(api):
    response = api.post("/api/v1/campaigns", CANARY)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["wave_percents"] == [10, 100]
    assert (body["wave_hold_seconds"], body["canary_action"]) == (600, "abort")
    assert (body["canary_min_delivery_rate"], body["canary_min_open_rate"]) == (
        90,
        None,
    )
    assert (body["wave"], body["canary_reason"]) == (0, "")
    assert body["canary_max_close_rate"] == 20
    patched = api.patch(
        f"/api/v1/campaigns/{body['id']}", {"wave_percents": [1, 10, 100]}
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["wave_percents"] == [1, 10, 100]


def test_bad_waves_are_a_400_naming_the_field(api):
    for bad in ([50, 10, 100], [10, 50], [100]):
        response = api.post("/api/v1/campaigns", {**CANARY, "wave_percents": bad})
        assert response.status_code == 400, bad
        assert "wave_percents" in response.json()["errors"]


def test_pause_resume_promote_and_the_waves_in_the_stats(api, app):
    devices = [make_device(app)[0] for _ in range(60)]
    body = api.post("/api/v1/campaigns", CANARY).json()
    url = f"/api/v1/campaigns/{body['id']}"
    assert api.post(f"{url}/send").status_code == 200
    send_due(now=timezone.now())
    first = Delivery.objects.count()
    assert 0 < first < len(devices)
    stats = api.get(f"{url}/stats").json()
    assert [(w["percent"], w["released"]) for w in stats["waves"]] == [
        (10, True),
        (100, False),
    ]
    assert stats["waves"][0]["sent"] == first
    assert stats["waves"][0]["delivery_rate"] == 0.0
    assert (stats["waves"][0]["closed"], stats["waves"][0]["close_rate"]) == (0, 0.0)
    assert stats["waves"][1]["close_rate"] is None  # nothing sent yet
    paused = api.post(f"{url}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert api.post(f"{url}/pause").status_code == 409
    resumed = api.post(f"{url}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "sending"
    promoted = api.post(f"{url}/promote")
    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["wave"] == 1
    send_due(now=timezone.now() + timedelta(seconds=1))
    assert Delivery.objects.count() == len(devices)
    assert api.get(url).json()["status"] == "sent"
    assert api.post(f"{url}/promote").status_code == 409


def test_a_bad_wave_aborts_and_the_reason_is_in_the_campaign(api, app):
    for _ in range(60):
        make_device(app)
    body = api.post("/api/v1/campaigns", CANARY).json()
    url = f"/api/v1/campaigns/{body['id']}"
    api.post(f"{url}/send")
    now = timezone.now()
    send_due(now=now)
    assert canary.waves_judge_due(now=now + timedelta(seconds=601)) == 1
    read = api.get(url).json()
    assert read["status"] == "cancelled"
    assert read["canary_reason"].startswith("Wave 1: delivery rate 0% < 90%: aborted")
    statuses = set(Delivery.objects.values_list("status", flat=True))
    assert statuses == {DeliveryStatus.CANCELLED}


def test_cancel_of_a_canary_set_to_recall_on_abort_recalls_what_was_sent(api, app):
    from devices.models import Control, Message

    for _ in range(60):
        make_device(app)
    body = api.post(
        "/api/v1/campaigns", {**CANARY, "canary_recall_on_abort": True}
    ).json()
    assert body["canary_recall_on_abort"] is True
    url = f"/api/v1/campaigns/{body['id']}"
    assert api.post(f"{url}/send").status_code == 200
    send_due(now=timezone.now())
    sent = set(Delivery.objects.values_list("device_id", flat=True))
    # Written to the sockets (not yet acknowledged): the devices may show it.
    Delivery.objects.update(status=DeliveryStatus.SENT)
    response = api.post(f"{url}/cancel")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    recall = Message.objects.get(control=Control.RECALL)
    told = set(
        Delivery.objects.filter(message=recall).values_list("device_id", flat=True)
    )
    assert told == sent
    pushes = Delivery.objects.exclude(message=recall)
    assert set(pushes.values_list("status", flat=True)) == {DeliveryStatus.CANCELLED}


def test_cancel_without_recall_on_abort_sends_no_recall(api, app):
    from devices.models import Message

    for _ in range(30):
        make_device(app)
    body = api.post("/api/v1/campaigns", CANARY).json()
    assert body["canary_recall_on_abort"] is False
    url = f"/api/v1/campaigns/{body['id']}"
    api.post(f"{url}/send")
    send_due(now=timezone.now())
    Delivery.objects.update(status=DeliveryStatus.SENT)
    assert api.post(f"{url}/cancel").status_code == 200
    assert not Message.objects.exclude(control="").exists()
