"""Saved segments through the server API, and campaigns and pushes that use
them: read when used; no deletion while a campaign will still send to one."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Campaign
from campaigns.sender import send_due
from devices.models import Delivery, Segment
from tests.api.conftest import ApiClient
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db

VIP_OR_IOS_FR = {
    "where": {
        "all": [
            {
                "any": [
                    {"field": "tag", "op": "eq", "value": "vip"},
                    {"field": "platform", "op": "eq", "value": "ios"},
                ]
            },
            {"field": "locale", "op": "eq", "value": "fr"},
        ]
    }
}


def world(app):
    """Who is in "VIP or iOS, French": a and b; not c, d."""
    devices = {
        "a": make_device(app, tags=["vip"], platform="android", locale="fr-FR"),
        "b": make_device(app, tags=[], platform="ios", locale="fr"),
        "c": make_device(app, tags=["vip"], platform="web", locale="en-US"),
        "d": make_device(app, tags=[], platform="android", locale="fr"),
    }
    return {name: device.pk for name, (device, _token) in devices.items()}


def save(api, **fields):
    body = {"name": "VIP or iOS, French", "audience": VIP_OR_IOS_FR, **fields}
    response = api.post("/api/v1/segments", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_create_read_list_edit_and_delete(api, app):
    world(app)
    body = save(api, description="Paris launch")
    assert body["audience"] == VIP_OR_IOS_FR
    assert body["description"] == "Paris launch"
    segment_id = body["id"]
    assert api.get(f"/api/v1/segments/{segment_id}").json() == body
    estimate = api.get(f"/api/v1/segments/{segment_id}/estimate").json()
    assert estimate == {"matching": 2, "online": 0}
    save(api, name="Another", audience={"tags_any": ["vip"]})
    listed = [s["name"] for s in api.get("/api/v1/segments").json()["results"]]
    assert listed == ["Another", "VIP or iOS, French"]
    edited = api.patch(f"/api/v1/segments/{segment_id}", {"name": "Renamed"})
    assert edited.status_code == 200 and edited.json()["name"] == "Renamed"
    assert edited.json()["audience"] == VIP_OR_IOS_FR
    assert api.delete(f"/api/v1/segments/{segment_id}").status_code == 204
    assert api.get(f"/api/v1/segments/{segment_id}").status_code == 404


def test_bad_segments_are_400_problems_naming_the_path(api, app):
    bad = {"where": {"any": [{"field": "tag", "op": "gt", "value": "vip"}]}}
    response = api.post("/api/v1/segments", {"name": "x", "audience": bad})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    (message,) = response.json()["errors"]["audience"]
    assert message.startswith("where.any[0].op: 'gt' does not apply to tag")
    empty = api.post("/api/v1/segments", {"name": "x", "audience": {}})
    assert empty.json()["errors"]["audience"] == [
        "A segment needs at least one condition."
    ]
    nested = api.post(
        "/api/v1/segments", {"name": "x", "audience": {"segment": 1}}
    ).json()
    assert "cannot refer to another segment" in nested["errors"]["audience"][0]
    save(api, name="Taken")
    taken = api.post(
        "/api/v1/segments", {"name": "Taken", "audience": {"tags_any": ["x"]}}
    )
    assert taken.status_code == 400
    assert "already has a segment named" in taken.json()["errors"]["name"][0]
    assert Segment.objects.count() == 1


def test_another_apps_segment_is_a_404_and_cannot_be_used(api, app, other_app):
    _key, other_secret = make_api_key(other_app)
    theirs = ApiClient(other_secret).post(
        "/api/v1/segments", {"name": "Theirs", "audience": {"tags_any": ["vip"]}}
    )
    segment_id = theirs.json()["id"]
    assert api.get(f"/api/v1/segments/{segment_id}").status_code == 404
    push = api.post("/api/v1/pushes", {"segment": segment_id, "title": "t"})
    assert push.status_code == 400
    assert push.json()["errors"]["segment"] == [
        f"segment: No segment {segment_id} in this app."
    ]
    campaign = api.post(
        "/api/v1/campaigns", {"name": "c", "title": "t", "segment": segment_id}
    )
    assert campaign.status_code == 400
    assert "No segment" in campaign.json()["errors"]["audience"][0]


def test_a_push_by_segment_reaches_its_devices(api, app):
    ids = world(app)
    segment = save(api)
    response = api.post("/api/v1/pushes", {"segment": segment["id"], "title": "Hi"})
    assert response.status_code == 202, response.content
    assert response.json()["targets"] == 2
    targeted = set(Delivery.objects.values_list("device_id", flat=True))
    assert targeted == {ids["a"], ids["b"]}
    # Inside an audience too, narrowed by more conditions.
    narrowed = {"segment": segment["id"], "platforms": ["ios"]}
    again = api.post("/api/v1/pushes", {"audience": narrowed, "title": "Hi"})
    assert again.json()["targets"] == 1
    both = api.post(
        "/api/v1/pushes", {"segment": segment["id"], "tags": ["vip"], "title": "t"}
    )
    assert both.status_code == 400


def test_a_campaign_sends_to_its_segment_as_it_is_when_it_sends(api, app):
    ids = world(app)
    segment = save(api)
    created = api.post(
        "/api/v1/campaigns", {"name": "c", "title": "t", "segment": segment["id"]}
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["segment"] == segment["id"]
    assert body["audience_kind"] == "filter"
    assert body["audience"] == {"segment": segment["id"]}
    when = (timezone.now() + timedelta(hours=1)).isoformat()
    api.post(f"/api/v1/campaigns/{body['id']}/schedule", {"send_at": when})
    # Edited after scheduling: the campaign sends to the new definition.
    only_ios = {"where": {"field": "platform", "op": "eq", "value": "ios"}}
    edited = api.patch(f"/api/v1/segments/{segment['id']}", {"audience": only_ios})
    assert edited.status_code == 200
    send_due(now=timezone.now() + timedelta(hours=2))
    campaign = Campaign.objects.get(pk=body["id"])
    assert campaign.status == "sent"
    targeted = set(
        Delivery.objects.filter(message=campaign.message).values_list(
            "device_id", flat=True
        )
    )
    assert targeted == {ids["b"]}


def test_a_segment_in_use_cannot_be_deleted_until_its_campaigns_finish(api, app):
    world(app)
    segment = save(api)
    campaign = lifecycle.campaign_create(
        app=app,
        name="Launch",
        title="t",
        audience_kind="filter",
        audience={"segment": segment["id"]},
    )
    refused = api.delete(f"/api/v1/segments/{segment['id']}")
    assert refused.status_code == 409
    assert "“Launch” (draft)" in refused.json()["detail"]
    lifecycle.campaign_schedule_now(campaign=campaign)
    lifecycle.campaign_start(campaign_id=campaign.pk, now=timezone.now())
    sending = api.patch(
        f"/api/v1/segments/{segment['id']}", {"audience": {"tags_any": ["x"]}}
    )
    assert sending.status_code == 409
    assert "is sending to it" in sending.json()["detail"]
    send_due(now=timezone.now())
    assert Campaign.objects.get(pk=campaign.pk).status == "sent"
    assert api.delete(f"/api/v1/segments/{segment['id']}").status_code == 204
    kept = Campaign.objects.get(pk=campaign.pk)
    assert kept.segment is None and kept.audience == {"segment": segment["id"]}


def test_a_batch_item_names_a_segment_and_a_patch_removes_it(api, app):
    world(app)
    segment = save(api)
    batch = api.post(
        "/api/v1/pushes/batch",
        {
            "messages": [
                {"segment": segment["id"], "title": "In it"},
                {"segment": 999999, "title": "No such"},
            ]
        },
    )
    first, second = batch.json()["results"]
    assert (first["status"], first["targets"]) == (202, 2)
    assert second["status"] == 400
    assert "No segment 999999" in second["error"]["errors"]["segment"][0]
    body = {
        "name": "c",
        "title": "t",
        "segment": segment["id"],
        "audience": {"locales": ["fr"]},
    }
    created = api.post("/api/v1/campaigns", body).json()
    assert created["audience"] == {"locales": ["fr"], "segment": segment["id"]}
    cleared = api.patch(f"/api/v1/campaigns/{created['id']}", {"segment": None})
    assert cleared.status_code == 200, cleared.content
    assert cleared.json()["audience"] == {"locales": ["fr"]}
    assert cleared.json()["segment"] is None
