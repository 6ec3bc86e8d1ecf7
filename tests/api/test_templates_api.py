"""Saved templates through the server API, and campaigns made from one."""

import pytest

from campaigns.models import Campaign, MessageTemplate
from tests.api.conftest import ApiClient
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db

HI = 'Hi {{ first_name|default:"there" }}'
WELCOME = {
    "name": "Welcome",
    "title": HI,
    "body": "Your {{ plan|default:'free' }} plan",
    "data": {"greeting": "{{ first_name|upper }}", "n": 1},
}


def save(api, **fields):
    response = api.post("/api/v1/templates", {**WELCOME, **fields})
    assert response.status_code == 201, response.content
    return response.json()


def test_create_read_list_update_and_delete(api):
    body = save(api)
    assert body["title"] == HI and body["data"]["greeting"] == "{{ first_name|upper }}"
    item = f"/api/v1/templates/{body['id']}"
    assert api.get(item).json()["name"] == "Welcome"
    save(api, name="Second")
    names = [t["name"] for t in api.get("/api/v1/templates").json()["results"]]
    assert names == ["Second", "Welcome"]
    found = api.get("/api/v1/templates?name=Welcome").json()["results"]
    assert [t["id"] for t in found] == [body["id"]]
    changed = api.patch(item, {"body": "{{ alias }}"})
    assert changed.status_code == 200 and changed.json()["body"] == "{{ alias }}"
    assert api.delete(item).status_code == 204
    assert api.get(item).status_code == 404


def test_a_bad_placeholder_is_a_400_naming_the_field_and_place(api):
    response = api.post("/api/v1/templates", {**WELCOME, "body": "x {{ a.b }}"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    (message,) = response.json()["errors"]["body"]
    assert message.startswith("{{ a.b }} at character 3: 'a.b' is not a name")
    data = {"k": "{% if x %}"}
    response = api.post("/api/v1/templates", {**WELCOME, "data": data})
    assert response.json()["errors"]["data"][0].startswith("data.k: '{%'")
    assert not MessageTemplate.objects.exists()


def test_content_too_large_in_its_worst_case_is_a_400(api):
    response = api.post("/api/v1/templates", {**WELCOME, "body": "{{ a }}" * 12})
    assert response.status_code == 400
    assert "the limit is 4096" in response.json()["errors"]["body"][0]
    fits = api.post("/api/v1/templates", {**WELCOME, "body": "{{ a|truncate:9 }}" * 12})
    assert fits.status_code == 201


def test_names_are_unique_per_app(api, other_api):
    save(api)
    again = api.post("/api/v1/templates", WELCOME)
    assert again.status_code == 400 and "already" in again.json()["errors"]["name"][0]
    assert other_api.post("/api/v1/templates", WELCOME).status_code == 201


def test_another_apps_template_is_a_404_and_cannot_seed_a_campaign(api, other_api):
    theirs = save(other_api)
    assert api.get(f"/api/v1/templates/{theirs['id']}").status_code == 404
    assert api.delete(f"/api/v1/templates/{theirs['id']}").status_code == 404
    response = api.post(
        "/api/v1/campaigns",
        {"name": "c", "template": theirs["id"], "audience_kind": "all"},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"template": ["No such template for this app."]}


def test_a_campaign_copies_a_templates_content_and_its_own_fields_win(api):
    template = save(api, url="https://shop.example/welcome")
    response = api.post(
        "/api/v1/campaigns",
        {
            "name": "From template",
            "template": template["id"],
            "body": "Own body",
            "audience_kind": "filter",
            "audience": {"tags_any": ["vip"]},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["title"] == HI and body["body"] == "Own body"
    assert body["url"] == "https://shop.example/welcome"
    assert body["data"] == WELCOME["data"]
    # Editing the template later changes no campaign.
    api.patch(f"/api/v1/templates/{template['id']}", {"title": "New"})
    assert Campaign.objects.get(pk=body["id"]).title == HI


def test_a_draft_takes_a_templates_content_on_patch(api):
    template = save(api)
    draft = api.post(
        "/api/v1/campaigns", {"name": "d", "title": "Plain", "audience_kind": "all"}
    ).json()
    response = api.patch(
        f"/api/v1/campaigns/{draft['id']}", {"template": template["id"]}
    )
    assert response.status_code == 200 and response.json()["title"] == HI


def test_a_campaign_without_title_or_template_is_refused(api):
    response = api.post("/api/v1/campaigns", {"name": "c", "audience_kind": "all"})
    assert response.status_code == 400
    assert response.json()["errors"]["title"] == ["A title is required."]


def test_a_campaign_with_a_bad_placeholder_is_refused(api):
    response = api.post(
        "/api/v1/campaigns",
        {"name": "c", "title": "{{ settings.SECRET_KEY }}", "audience_kind": "all"},
    )
    assert response.status_code == 400
    assert "is not a name" in response.json()["errors"]["title"][0]


def test_scopes(app):
    reader = ApiClient(make_api_key(app, ["campaigns:read"])[1])
    assert reader.get("/api/v1/templates").status_code == 200
    refused = reader.post("/api/v1/templates", WELCOME)
    assert refused.status_code == 403 and "campaigns:write" in refused.json()["detail"]
