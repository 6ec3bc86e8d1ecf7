"""Saved segments and the audience builder in the console, as a Marketer,
through Django's test client (the browser test drives the builder itself)."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from campaigns import lifecycle, segments
from campaigns.models import Campaign
from devices.models import Segment
from tests.admin.test_campaign_admin import campaign_form
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

SEGMENTS = "/admin/devices/segment/"
ESTIMATE = "/admin/campaigns/campaign/estimate.json"
EITHER_FR = {
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


@pytest.fixture
def marketer(client):
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    client.force_login(user)
    return user


@pytest.fixture
def shop():
    app = make_app(name="Shop")
    make_device(app, tags=["vip"], platform="android", locale="fr-FR")
    make_device(app, platform="ios", locale="fr")
    make_device(app, tags=["vip"], platform="web", locale="en")
    return app


def segment_form(app, **fields):
    return {
        "app": app.pk,
        "name": "VIP or iOS, French",
        "description": "",
        "audience_json": json.dumps(EITHER_FR),
        **fields,
    }


def test_a_marketer_saves_a_segment_built_in_the_builder(client, marketer, shop):
    response = client.post(f"{SEGMENTS}add/", segment_form(shop))
    assert response.status_code == 302, response.content.decode()[:3000]
    segment = Segment.objects.get()
    assert segment.spec == EITHER_FR and segment.created_by == marketer
    page = client.get(f"{SEGMENTS}{segment.pk}/change/").content.decode()
    assert "kpns-audience-json" in page and "audience-builder.js" in page
    assert "New campaign for this segment" in page
    listing = client.get(SEGMENTS).content.decode()
    # Counted by the page's script, one at a time, not by the list's query.
    assert "kpns-segment-count" in listing and f"segment={segment.pk}" in listing


def test_a_bad_segment_is_refused_at_its_box(client, marketer, shop):
    bad = {"where": {"any": [{"field": "tag", "op": "gt", "value": "vip"}]}}
    response = client.post(
        f"{SEGMENTS}add/", segment_form(shop, audience_json=json.dumps(bad))
    )
    assert response.status_code == 200
    assert "where.any[0].op: &#x27;gt&#x27; does not apply to tag" in (
        response.content.decode()
    )
    empty = client.post(f"{SEGMENTS}add/", segment_form(shop, audience_json=""))
    assert "A segment needs at least one condition." in empty.content.decode()
    assert not Segment.objects.exists()


def test_the_live_count_takes_the_builder_and_a_segment(client, marketer, shop):
    counted = client.get(
        ESTIMATE,
        {
            "app": shop.pk,
            "audience_kind": "filter",
            "audience_json": json.dumps(EITHER_FR),
        },
    ).json()
    assert (counted["matching"], counted["everyone"]) == (2, False)
    segment = segments.segment_create(app=shop, name="Fr", spec=EITHER_FR)
    by_segment = client.get(
        ESTIMATE, {"app": shop.pk, "audience_kind": "filter", "segment": segment.pk}
    ).json()
    assert by_segment["matching"] == 2
    narrowed = client.get(
        ESTIMATE,
        {
            "app": shop.pk,
            "audience_kind": "filter",
            "segment": segment.pk,
            "audience_json": json.dumps(
                {"where": {"field": "platform", "op": "eq", "value": "ios"}}
            ),
        },
    ).json()
    assert narrowed["matching"] == 1
    broken = client.get(
        ESTIMATE, {"app": shop.pk, "audience_kind": "filter", "audience_json": "{"}
    ).json()
    assert broken["error"].startswith("Not valid JSON")
    everyone = client.get(
        ESTIMATE, {"app": shop.pk, "audience_kind": "all", "segment": segment.pk}
    ).json()
    assert (
        "Conditions are filled in but the audience is every device"
        in (everyone["error"])
    )


def test_a_campaign_picks_a_segment_in_the_composer(client, marketer, shop):
    segment = segments.segment_create(app=shop, name="Fr", spec=EITHER_FR)
    form = campaign_form(shop, tags_any="", locales="", platforms=[])
    form.update(segment=segment.pk, audience_json="")
    response = client.post("/admin/campaigns/campaign/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    campaign = Campaign.objects.get()
    assert campaign.audience == {"segment": segment.pk}
    assert campaign.segment == segment
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert '<strong id="est-matching">2</strong>' in page.content.decode()
    listing = client.get("/admin/campaigns/campaign/").content.decode()
    assert "segment Fr" in listing


def test_builder_conditions_and_flat_boxes_both_apply(client, marketer, shop):
    tree = {"where": {"field": "locale", "op": "eq", "value": "fr"}}
    form = campaign_form(shop, locales="", platforms=[], audience_json=json.dumps(tree))
    response = client.post("/admin/campaigns/campaign/add/", form)
    assert response.status_code == 302
    assert Campaign.objects.get().audience == {"tags_any": ["vip"], **tree}
    twice = campaign_form(
        shop, name="Twice", audience_json=json.dumps({"tags_any": ["x"]})
    )
    refused = client.post("/admin/campaigns/campaign/add/", twice).content.decode()
    assert "tags_any is given twice" in refused


def test_a_segment_in_use_is_not_deleted_and_says_by_whom(client, marketer, shop):
    segment = segments.segment_create(app=shop, name="Fr", spec=EITHER_FR)
    campaign = lifecycle.campaign_create(
        app=shop,
        name="Launch",
        title="t",
        audience_kind="filter",
        audience={"segment": segment.pk},
    )
    lifecycle.campaign_schedule(
        campaign=campaign, send_at=timezone.now() + timedelta(days=1)
    )
    page = client.get(f"{SEGMENTS}{segment.pk}/delete/").content.decode()
    assert "Campaign “Launch” (Scheduled) uses it" in page
    client.post(f"{SEGMENTS}{segment.pk}/delete/", {"post": "yes"})
    assert Segment.objects.filter(pk=segment.pk).exists()
    change = client.get(f"{SEGMENTS}{segment.pk}/change/").content.decode()
    assert "Launch" in change and "cannot be deleted while they use it" in change
    lifecycle.campaign_unschedule(campaign=campaign)
    lifecycle.campaign_update(campaign=campaign, audience={"tags_any": ["vip"]})
    assert Campaign.objects.get(pk=campaign.pk).segment is None
    response = client.post(f"{SEGMENTS}{segment.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Segment.objects.filter(pk=segment.pk).exists()
