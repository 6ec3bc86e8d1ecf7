"""Frequency caps and quiet hours through the server API."""

from datetime import time

import pytest

from campaigns.models import Campaign
from devices.models import App, CappedPush
from tests.factories import make_device

pytestmark = pytest.mark.django_db


def cap_app(app, count=1):
    App.objects.filter(pk=app.pk).update(
        frequency_cap_count=count, frequency_cap_window_seconds=86400
    )


def test_api_pushes_are_neither_capped_nor_counted_by_default(api, app):
    cap_app(app)
    device, _ = make_device(app)
    for _ in range(3):
        response = api.post(
            "/api/v1/pushes", {"device_ids": [str(device.pk)], "title": "Hi"}
        )
        assert response.status_code == 202
        assert response.json()["targets"] == 1
        assert response.json()["capped"] == 0
    assert CappedPush.objects.count() == 0


def test_a_push_that_respects_the_cap_counts_and_is_capped(api, app):
    cap_app(app)
    device, _ = make_device(app)
    other, _ = make_device(app)
    first = api.post(
        "/api/v1/pushes",
        {"device_ids": [str(device.pk)], "title": "1", "respect_frequency_cap": True},
    )
    assert first.json() | {"message_id": None} == {
        "message_id": None,
        "targets": 1,
        "capped": 0,
    }
    second = api.post(
        "/api/v1/pushes",
        {
            "device_ids": [str(device.pk), str(other.pk)],
            "title": "2",
            "respect_frequency_cap": True,
        },
    )
    assert second.status_code == 202
    assert (second.json()["targets"], second.json()["capped"]) == (1, 1)
    assert CappedPush.objects.filter(device=device).count() == 1


def test_respecting_the_cap_of_an_app_without_one_sends_to_all(api, app):
    device, _ = make_device(app)
    response = api.post(
        "/api/v1/pushes",
        {"device_ids": [str(device.pk)], "title": "1", "respect_frequency_cap": True},
    )
    assert (response.json()["targets"], response.json()["capped"]) == (1, 0)
    assert CappedPush.objects.count() == 0


def test_a_batch_refuses_respect_frequency_cap_per_item(api, app):
    device, _ = make_device(app)
    response = api.post(
        "/api/v1/pushes/batch",
        {
            "messages": [
                {"device_ids": [str(device.pk)], "title": "a"},
                {
                    "device_ids": [str(device.pk)],
                    "title": "b",
                    "respect_frequency_cap": True,
                },
            ]
        },
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 400]
    assert "respect_frequency_cap" in results[1]["error"]["errors"]


def test_campaigns_take_and_show_their_cap_and_quiet_hours(api, app):
    response = api.post(
        "/api/v1/campaigns",
        {
            "name": "Night owls",
            "title": "Hi",
            "frequency_cap_mode": "custom",
            "frequency_cap_count": 2,
            "frequency_cap_window_seconds": 3600,
            "quiet_hours_mode": "custom",
            "quiet_hours_start": "22:00",
            "quiet_hours_end": "08:00",
            "quiet_hours_action": "skip",
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["frequency_cap_count"] == 2
    assert body["quiet_hours_start"] == "22:00:00"
    campaign = Campaign.objects.get(pk=body["id"])
    assert campaign.quiet_hours_end == time(8, 0)
    assert campaign.quiet_hours_action == "skip"
    stats = api.get(f"/api/v1/campaigns/{campaign.pk}/stats").json()
    assert stats["pacing"] == {"capped": 0, "deferred": 0, "skipped": 0}


def test_a_custom_cap_without_its_numbers_is_a_400(api, app):
    response = api.post(
        "/api/v1/campaigns",
        {"name": "x", "title": "x", "frequency_cap_mode": "custom"},
    )
    assert response.status_code == 400
    assert "frequency_cap_count" in response.json()["errors"]


def test_quiet_hours_that_end_when_they_start_are_refused(api, app):
    response = api.post(
        "/api/v1/campaigns",
        {
            "name": "x",
            "title": "x",
            "quiet_hours_mode": "custom",
            "quiet_hours_start": "08:00",
            "quiet_hours_end": "08:00",
        },
    )
    assert response.status_code == 400
    assert "quiet_hours_end" in response.json()["errors"]


def test_the_schema_documents_caps_and_quiet_hours(client):
    raw = client.get("/api/schema/?format=json").json()
    parts = raw["components"]["schemas"]
    assert "respect_frequency_cap" in parts["PushRequest"]["properties"]
    assert "capped" in parts["PushAccepted"]["properties"]
    assert set(parts["PacingCounts"]["properties"]) == {
        "capped",
        "deferred",
        "skipped",
    }
    assert "pacing" in parts["CampaignStats"]["properties"]
    campaign_write = parts["CampaignWriteRequest"]["properties"]
    for name in (
        "frequency_cap_mode",
        "frequency_cap_count",
        "frequency_cap_window_seconds",
        "quiet_hours_mode",
        "quiet_hours_start",
        "quiet_hours_end",
        "quiet_hours_action",
    ):
        assert name in campaign_write
        assert name in parts["Campaign"]["properties"]
