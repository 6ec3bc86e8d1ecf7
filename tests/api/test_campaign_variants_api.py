"""A/B variants, language versions and the winner through the server API."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import abtest
from campaigns.models import Campaign
from campaigns.sender import send_due
from devices.models import Delivery
from tests.factories import make_device

pytestmark = pytest.mark.django_db

AB = {
    "name": "Spring A/B",
    "title": "A: 30% off",
    "audience_kind": "all",
    "split_percent": 50,
    "variants": [{"key": "B", "split_percent": 50, "title": "B: free shipping"}],
    "languages": [
        {"locale": "fr", "title": "A : -30 %"},
        {"variant": "B", "locale": "fr", "title": "B : livraison offerte"},
    ],
    "test_percent": 50,
    "winner_metric": "delivered",
    "winner_window_seconds": 3600,
}


def test_an_ab_campaign_is_created_read_and_edited(api):
    response = api.post("/api/v1/campaigns", AB)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["variants"] == [
        {
            "key": "B",
            "split_percent": 50,
            "title": "B: free shipping",
            "body": "",
            "url": "",
            "image": "",
            "data": {},
        }
    ]
    assert [(v["variant"], v["locale"]) for v in body["languages"]] == [
        ("A", "fr"),
        ("B", "fr"),
    ]
    assert (body["test_percent"], body["winner"]) == (50, "")
    patched = api.patch(
        f"/api/v1/campaigns/{body['id']}",
        {
            "split_percent": 40,
            "variants": [
                {"key": "B", "split_percent": 30, "title": "B"},
                {"key": "C", "split_percent": 30, "title": "C"},
            ],
        },
    )
    assert patched.status_code == 200, patched.content
    assert [v["key"] for v in patched.json()["variants"]] == ["B", "C"]
    # Languages not given are kept.
    assert len(patched.json()["languages"]) == 2


def test_shares_that_do_not_add_up_are_a_400_naming_the_field(api):
    response = api.post("/api/v1/campaigns", {**AB, "split_percent": 70})
    assert response.status_code == 400
    assert "70 + 50 = 120" in response.json()["errors"]["split_percent"][0]
    response = api.post(
        "/api/v1/campaigns", {**AB, "variants": [], "split_percent": 100}
    )
    assert response.status_code == 400
    assert "test_percent" in response.json()["errors"]
    assert not Campaign.objects.exists()


def test_winner_picked_through_the_api_goes_to_the_rest(api, app):
    devices = [make_device(app, locale="fr-FR")[0] for _ in range(30)]
    body = api.post("/api/v1/campaigns", AB).json()
    assert api.post(f"/api/v1/campaigns/{body['id']}/send").status_code == 200
    send_due(now=timezone.now())
    tested = Delivery.objects.count()
    assert 0 < tested < 30
    stats = api.get(f"/api/v1/campaigns/{body['id']}/stats").json()
    assert [v["key"] for v in stats["variants"]] == ["A", "B"]
    assert stats["variants"][1]["verdict"].startswith("not yet significant")
    assert set(stats["languages"]) == {"fr"}
    assert sum(v["targeted"] for v in stats["languages"].values()) == tested
    assert "platforms" not in stats  # counted over rows: on demand only
    url = f"/api/v1/campaigns/{body['id']}/stats?breakdown=platform"
    by_platform = api.get(url).json()["platforms"]
    assert by_platform == {"android": {"targeted": tested, "delivered": 0, "opened": 0}}
    bad = api.get(f"/api/v1/campaigns/{body['id']}/stats?breakdown=moon")
    assert bad.status_code == 400
    picked = api.post(f"/api/v1/campaigns/{body['id']}/winner", {"variant": "B"})
    assert picked.status_code == 200, picked.content
    assert picked.json()["winner"] == "B"
    again = api.post(f"/api/v1/campaigns/{body['id']}/winner", {"variant": "A"})
    assert again.status_code == 409
    send_due(now=timezone.now() + timedelta(seconds=1))
    assert Delivery.objects.count() == len(devices)
    titles = set(
        Delivery.objects.exclude(device_id__in=[d.pk for d in devices][:0]).values_list(
            "message__title", flat=True
        )
    )
    assert "B : livraison offerte" in titles
    assert abtest.winners_decide_due(now=timezone.now() + timedelta(days=1)) == 0
    rows = api.get(f"/api/v1/campaigns/{body['id']}/results").json()["results"]
    assert {row["language"] for row in rows} == {"fr"}
    assert {row["variant"] for row in rows} <= {"A", "B"}


def test_a_winner_for_a_campaign_without_a_test_group_is_a_409(api, app):
    make_device(app)
    body = api.post(
        "/api/v1/campaigns", {"name": "x", "title": "x", "audience_kind": "all"}
    ).json()
    api.post(f"/api/v1/campaigns/{body['id']}/send")
    response = api.post(f"/api/v1/campaigns/{body['id']}/winner", {"variant": "A"})
    assert response.status_code == 409
    bad = api.post(f"/api/v1/campaigns/{body['id']}/winner", {"variant": "Z"})
    assert bad.status_code == 400
