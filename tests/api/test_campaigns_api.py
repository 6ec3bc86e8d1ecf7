"""Campaigns through the server API: every change goes through the lifecycle."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus
from campaigns.sender import send_due
from devices.models import Delivery, Device
from tests.api.conftest import ApiClient
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db

DRAFT = {
    "name": "Spring sale",
    "title": "30% off",
    "body": "Today only",
    "audience_kind": "filter",
    "audience": {"tags_any": ["vip"]},
    "ttl_seconds": 3600,
}


def create(api, **fields):
    response = api.post("/api/v1/campaigns", {**DRAFT, **fields})
    assert response.status_code == 201, response.content
    return response.json()


def test_create_read_list_and_update_a_draft(api, app):
    body = create(api)
    assert body["status"] == "draft" and body["message_id"] is None
    campaign = Campaign.objects.get(pk=body["id"])
    assert campaign.app == app and campaign.audience == {"tags_any": ["vip"]}
    assert api.get(f"/api/v1/campaigns/{body['id']}").json()["name"] == "Spring sale"
    response = api.patch(f"/api/v1/campaigns/{body['id']}", {"title": "40% off"})
    assert response.status_code == 200 and response.json()["title"] == "40% off"
    second = create(api, name="Second")
    listed = [c["id"] for c in api.get("/api/v1/campaigns").json()["results"]]
    assert listed == [second["id"], body["id"]]
    assert api.get("/api/v1/campaigns?status=sent").json()["results"] == []


def test_invalid_campaigns_are_400_with_field_messages(api):
    response = api.post(
        "/api/v1/campaigns",
        {**DRAFT, "name": "", "audience": {"tags_any": "vip"}, "priority": "x"},
    )
    assert response.status_code == 400
    assert {"name", "priority"} <= set(response.json()["errors"])
    response = api.post("/api/v1/campaigns", {**DRAFT, "audience": {"nope": []}})
    assert response.json()["errors"] == {"audience": ["Unknown key 'nope'."]}
    assert not Campaign.objects.exists()


def test_send_now_sends_to_online_devices_and_stats_follow(api, app):
    online, _ = make_device(app, tags=["vip"])
    offline, _ = make_device(app, tags=["vip"])
    make_device(app)
    Device.objects.filter(pk=online.pk).update(node="n1")
    campaign = create(api)
    response = api.post(f"/api/v1/campaigns/{campaign['id']}/send")
    assert response.status_code == 200, response.content
    assert response.json()["status"] in ("scheduled", "sending")
    # The online pass ran inline; the scheduler sends the rest.
    assert Delivery.objects.filter(device=online).count() == 1
    send_due(now=timezone.now())
    stats = api.get(f"/api/v1/campaigns/{campaign['id']}/stats").json()
    assert stats["status"] == "sent"
    assert stats["stats"]["targeted"] == 2 and stats["stats"]["pending"] == 2
    results = api.get(f"/api/v1/campaigns/{campaign['id']}/results").json()
    assert {r["device_id"] for r in results["results"]} == {
        str(online.pk),
        str(offline.pk),
    }
    one = api.get(
        f"/api/v1/campaigns/{campaign['id']}/results?device_id={offline.pk}"
    ).json()["results"]
    assert [r["status"] for r in one] == ["pending"]
    # A second send of the same campaign is a conflict, not a second send.
    again = api.post(f"/api/v1/campaigns/{campaign['id']}/send")
    assert again.status_code == 409
    assert again["Content-Type"] == "application/problem+json"
    assert Delivery.objects.count() == 2


def test_schedule_then_cancel(api, app):
    campaign = create(api)
    when = (timezone.now() + timedelta(hours=1)).isoformat()
    response = api.post(
        f"/api/v1/campaigns/{campaign['id']}/schedule", {"send_at": when}
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "scheduled"
    # A scheduled campaign can be edited; it stays scheduled.
    edit = api.patch(f"/api/v1/campaigns/{campaign['id']}", {"title": "x"})
    assert edit.status_code == 200 and edit.json()["status"] == "scheduled"
    response = api.post(f"/api/v1/campaigns/{campaign['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.post(f"/api/v1/campaigns/{campaign['id']}/cancel").status_code == 409
    edit = api.patch(f"/api/v1/campaigns/{campaign['id']}", {"title": "y"})
    assert edit.status_code == 409


def test_a_scheduled_campaign_can_be_sent_now(api, app):
    """docs/api.md: send takes a draft or a scheduled campaign (was 409)."""
    make_device(app, tags=["vip"])
    campaign = create(api)
    when = (timezone.now() + timedelta(hours=1)).isoformat()
    api.post(f"/api/v1/campaigns/{campaign['id']}/schedule", {"send_at": when})
    response = api.post(f"/api/v1/campaigns/{campaign['id']}/send")
    assert response.status_code == 200, response.content
    send_due(now=timezone.now())
    sent = Campaign.objects.get(pk=campaign["id"])
    assert sent.status == CampaignStatus.SENT
    assert sent.slices.count() == 1  # the hour-later slice was replaced
    assert Delivery.objects.filter(message=sent.message).count() == 1


def test_audiences_that_contradict_themselves_are_refused(api):
    everyone_with_tags = api.post(
        "/api/v1/campaigns", {**DRAFT, "audience_kind": "all"}
    )
    assert everyone_with_tags.status_code == 400
    assert "audience_kind" in everyone_with_tags.json()["errors"]
    empty_filter = api.post("/api/v1/campaigns", {**DRAFT, "audience": {}})
    assert empty_filter.status_code == 400
    bad_tag = api.post(
        "/api/v1/campaigns", {**DRAFT, "audience": {"tags_any": ["v i p!"]}}
    )
    assert bad_tag.status_code == 400
    assert "no device can have the tag 'v i p!'" in str(bad_tag.json()["errors"])
    assert not Campaign.objects.exists()


def test_schedule_errors(api):
    campaign = create(api)
    path = f"/api/v1/campaigns/{campaign['id']}/schedule"
    response = api.post(path, {})
    assert response.status_code == 400
    assert response.json()["errors"] == {"send_at": ["Choose when to send."]}
    past = (timezone.now() - timedelta(days=1)).isoformat()
    assert api.post(path, {"send_at": past}).status_code == 400
    assert api.post(path, {"send_at": "tomorrow"}).status_code == 400


def test_stats_of_a_draft_are_zero(api):
    campaign = create(api)
    stats = api.get(f"/api/v1/campaigns/{campaign['id']}/stats").json()
    assert stats["stats"]["targeted"] == 0 and stats["timeline"] == []
    assert (
        api.get(f"/api/v1/campaigns/{campaign['id']}/results").json()["results"] == []
    )


def test_another_apps_key_gets_404_for_every_campaign_endpoint(api, other_api):
    campaign = create(api)
    base = f"/api/v1/campaigns/{campaign['id']}"
    for path in (base, f"{base}/stats", f"{base}/results"):
        assert other_api.get(path).status_code == 404, path
    assert other_api.patch(base, {"title": "x"}).status_code == 404
    for action in ("send", "cancel", "schedule"):
        assert other_api.post(f"{base}/{action}").status_code == 404, action
    assert other_api.get("/api/v1/campaigns").json()["results"] == []
    assert Campaign.objects.get(pk=campaign["id"]).status == CampaignStatus.DRAFT


def test_campaign_scopes(app):
    reader = ApiClient(make_api_key(app, scopes=["campaigns:read"])[1])
    writer = ApiClient(make_api_key(app, scopes=["campaigns:write"])[1])
    campaign = create(writer)
    assert reader.post("/api/v1/campaigns", DRAFT).status_code == 403
    assert reader.post(f"/api/v1/campaigns/{campaign['id']}/send").status_code == 403
    assert reader.get(f"/api/v1/campaigns/{campaign['id']}").status_code == 200
    # Stats and results need stats:read.
    assert reader.get(f"/api/v1/campaigns/{campaign['id']}/stats").status_code == 403
    assert writer.get("/api/v1/campaigns").status_code == 403
