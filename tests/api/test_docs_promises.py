"""Promises of docs/api.md for the newer endpoints, checked word for word:
fields, status codes and the names an error gives."""

import json

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.sender import send_due
from kpns_sdk.e2ee import DeviceKey as SdkKey
from tests.api.test_e2ee_api import _put_key
from tests.api.test_push_stream import results, stream
from tests.factories import make_device

pytestmark = pytest.mark.django_db

VIP = {"where": {"field": "tag", "op": "eq", "value": "vip"}}


def test_a_push_answers_message_id_targets_and_capped(api, app):
    device, _ = make_device(app)
    response = api.post(
        "/api/v1/pushes", {"device_ids": [str(device.pk)], "title": "x"}
    )
    assert response.status_code == 202, response.content
    assert set(response.json()) == {"message_id", "targets", "capped"}


def test_two_device_namings_are_a_400_on_all(api, app):
    response = api.post(
        "/api/v1/pushes", {"tags": ["vip"], "aliases": ["u"], "title": "x"}
    )
    assert response.status_code == 400
    assert "__all__" in response.json()["errors"]


def test_a_bad_tag_of_a_push_is_named_by_tags(api, app):
    response = api.post("/api/v1/pushes", {"tags": ["bad tag!"], "title": "x"})
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "tags": ["no device can have the tag 'bad tag!' (1-64 of A-Z a-z 0-9 _ . : -)."]
    }


def test_a_stream_line_refuses_respect_frequency_cap(app, api_key):
    device, _ = make_device(app)
    lines = [
        {"device_ids": [str(device.pk)], "title": "x", "respect_frequency_cap": True},
        {"device_ids": [str(device.pk)], "title": "x"},
    ]
    answered = results(stream(api_key[1], lines))
    assert answered[0]["status"] == 400
    assert list(answered[0]["error"]["errors"]) == ["respect_frequency_cap"]
    assert answered[1]["status"] == 202


def test_language_versions_are_not_taken_by_a_push(api, app):
    response = api.post(
        "/api/v1/pushes",
        {"tags": ["vip"], "title": "x", "languages": [{"locale": "fr"}]},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"languages": ["Unknown field."]}


def test_the_key_directory_query_names_audience_on_a_bad_filter(api, app):
    response = api.post("/api/v1/device-keys/query", {"audience": {"where": {}}})
    assert response.status_code == 400
    assert "audience" in response.json()["errors"]
    everyone = api.post("/api/v1/device-keys/query", {"audience": {}})
    assert everyone.status_code == 200, everyone.content
    assert everyone.json()["results"] == []


def test_a_segment_estimate_and_name_filter(api, app):
    make_device(app, tags=["vip"])
    made = api.post("/api/v1/segments", {"name": "VIPs", "audience": VIP})
    assert made.status_code == 201, made.content
    assert set(made.json()) == {
        "id",
        "name",
        "description",
        "audience",
        "created_at",
        "updated_at",
    }
    segment_id = made.json()["id"]
    estimate = api.get(f"/api/v1/segments/{segment_id}/estimate").json()
    assert estimate == {"matching": 1, "online": 0}
    listed = api.get("/api/v1/segments?name=VIPs").json()["results"]
    assert [item["id"] for item in listed] == [segment_id]
    again = api.post("/api/v1/segments", {"name": "VIPs", "audience": VIP})
    assert again.status_code == 400
    nested = api.post(
        "/api/v1/segments", {"name": "n", "audience": {"segment": segment_id}}
    )
    assert nested.status_code == 400


def test_a_campaign_segment_without_kind_is_a_filter_and_null_removes_it(api, app):
    segment_id = api.post("/api/v1/segments", {"name": "VIPs", "audience": VIP}).json()[
        "id"
    ]
    made = api.post(
        "/api/v1/campaigns", {"name": "c", "title": "t", "segment": segment_id}
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["audience_kind"] == "filter"
    assert body["segment"] == segment_id
    assert body["audience"] == {"segment": segment_id}
    cleared = api.patch(
        f"/api/v1/campaigns/{body['id']}",
        {"segment": None, "audience": {"tags_any": ["vip"]}},
    )
    assert cleared.status_code == 200, cleared.content
    assert cleared.json()["segment"] is None


def test_stats_and_results_carry_the_documented_keys(api, app):
    make_device(app, locale="fr-FR")
    made = api.post(
        "/api/v1/campaigns",
        {
            "name": "ab",
            "title": "A",
            "audience_kind": "all",
            "split_percent": 50,
            "variants": [{"key": "B", "split_percent": 50, "title": "B"}],
            "languages": [{"locale": "fr", "title": "A fr"}],
        },
    )
    assert made.status_code == 201, made.content
    campaign_id = made.json()["id"]
    assert api.post(f"/api/v1/campaigns/{campaign_id}/send").status_code == 200
    send_due(now=timezone.now())
    stats = api.get(f"/api/v1/campaigns/{campaign_id}/stats").json()
    assert {"status", "stats", "pacing", "timeline", "variants", "languages"} <= set(
        stats
    )
    assert set(stats["pacing"]) == {"capped", "deferred", "skipped"}
    assert {
        "key",
        "split_percent",
        "sent",
        "delivered",
        "opened",
        "delivered_rate",
        "opened_rate",
        "difference",
        "z",
        "significant",
        "verdict",
    } <= set(stats["variants"][0])
    rows = api.get(f"/api/v1/campaigns/{campaign_id}/results").json()["results"]
    assert {
        "device_id",
        "alias",
        "platform",
        "seq",
        "status",
        "sent_at",
        "delivered_at",
        "opened_at",
        "variant",
        "language",
    } <= set(rows[0])
    assert Campaign.objects.get(pk=campaign_id).status == "sent"


def test_a_winner_for_a_draft_is_a_409(api, app):
    made = api.post(
        "/api/v1/campaigns",
        {
            "name": "ab",
            "title": "A",
            "audience_kind": "all",
            "split_percent": 50,
            "variants": [{"key": "B", "split_percent": 50, "title": "B"}],
            "test_percent": 20,
        },
    ).json()
    response = api.post(f"/api/v1/campaigns/{made['id']}/winner", {"variant": "B"})
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"


def test_a_template_by_name(api, app):
    made = api.post("/api/v1/templates", {"name": "W", "title": "Hi"})
    assert made.status_code == 201
    listed = api.get("/api/v1/templates?name=W").json()["results"]
    assert [t["name"] for t in listed] == ["W"]
    assert json.loads(made.content)["title"] == "Hi"


def test_a_segment_create_honours_an_idempotency_key(api, app):
    body = {"name": "VIPs", "audience": VIP}
    first = api.post("/api/v1/segments", body, **{"Idempotency-Key": "seg-1"})
    again = api.post("/api/v1/segments", body, **{"Idempotency-Key": "seg-1"})
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    other = api.post(
        "/api/v1/segments", {**body, "name": "x"}, **{"Idempotency-Key": "seg-1"}
    )
    assert other.status_code == 422


def test_the_key_query_pages_by_posting_the_same_body_to_next(api, app):
    """docs/api.md: "to page, POST the same body to the `next` link"."""
    made = set()
    for _ in range(3):
        device, token = make_device(app)
        assert _put_key(token, SdkKey.generate()).status_code == 200
        made.add(str(device.pk))
    body = {"audience": {}}
    page = api.post("/api/v1/device-keys/query?limit=2", body).json()
    seen = [r["device_id"] for r in page["results"]]
    assert len(seen) == 2 and page["next"]
    path = page["next"].split("testserver", 1)[-1]
    rest = api.post(path, body)
    assert rest.status_code == 200, rest.content
    seen += [r["device_id"] for r in rest.json()["results"]]
    assert sorted(seen) == sorted(made)
    assert rest.json()["next"] is None
