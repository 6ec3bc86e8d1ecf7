"""Saved templates and the personalised preview in the admin, as a Marketer."""

import pytest
from django.contrib.auth.models import Group, User

from campaigns import saved_templates
from campaigns.models import Campaign, MessageTemplate
from devices.models import Delivery
from tests.admin.test_campaign_admin import campaign_form
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

TEMPLATES = "/admin/campaigns/messagetemplate/"
PREVIEW = f"{TEMPLATES}preview.json"
HI = 'Hi {{ first_name|default:"there" }}'


@pytest.fixture
def marketer(client):
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    client.force_login(user)
    return user


def template_form(app, **overrides):
    form = {
        "app": app.pk,
        "name": "Welcome",
        "title": HI,
        "body": "Your {{ plan|default:'free' }} plan is ready.",
        "url": "",
        "image": "",
        "data": '{"greeting": "{{ first_name|upper }}"}',
    }
    form.update(overrides)
    return form


def test_a_marketer_saves_a_template_with_placeholders(client, marketer):
    app = make_app()
    response = client.post(f"{TEMPLATES}add/", template_form(app))
    assert response.status_code == 302
    template = MessageTemplate.objects.get()
    assert template.title == HI
    assert template.data == {"greeting": "{{ first_name|upper }}"}


def test_a_syntax_error_is_shown_at_the_field_with_the_placeholder(client, marketer):
    app = make_app()
    form = template_form(app, title="Hi {{ first_name|shout }}")
    page = client.post(f"{TEMPLATES}add/", form).content.decode()
    assert "{{ first_name|shout }} at character 4: unknown filter" in page.replace(
        "&#x27;", "'"
    ).replace("&quot;", '"')
    assert not MessageTemplate.objects.exists()


def test_a_template_too_large_for_a_push_in_its_worst_case_is_refused(client, marketer):
    app = make_app()
    form = template_form(app, body="{{ a }} " * 12)
    page = client.post(f"{TEMPLATES}add/", form).content.decode()
    assert "this push would be" in page and "the limit is 4096" in page
    assert not MessageTemplate.objects.exists()


def test_a_campaign_starts_from_a_template_with_its_content(client, marketer):
    app = make_app()
    template = saved_templates.template_create(
        app=app, name="Welcome", title=HI, body="b", data={"k": "{{ alias }}"}
    )
    page = client.get(f"/admin/campaigns/campaign/add/?template={template.pk}")
    form = page.context["adminform"].form
    assert form.initial["title"] == HI
    assert form.initial["app"] == app.pk
    html = page.content.decode()
    assert 'id="kpns-template-pick"' in html
    assert f'<option value="{template.pk}" selected>' in html
    assert "{{ alias }}" in html.replace("&quot;", '"')  # the data box
    # The template's link on its list leads there.
    listing = client.get(TEMPLATES).content.decode()
    assert f"/admin/campaigns/campaign/add/?template={template.pk}" in listing


def test_a_campaign_with_a_bad_placeholder_is_refused_at_save(client, marketer):
    app = make_app()
    form = campaign_form(app, title="Hi {{ user.name }}")
    page = client.post("/admin/campaigns/campaign/add/", form).content.decode()
    assert "is not a name: letters, digits and _ only" in page
    assert not Campaign.objects.exists()


def test_preview_renders_for_a_named_device_and_for_one_without_the_value(
    client, marketer
):
    app = make_app()
    amelie, _ = make_device(app, alias="amelie", attributes={"first_name": "Amélie"})
    bare, _ = make_device(app, alias="bare", platform="ios", locale="fr")
    query = {"app": app.pk, "title": HI, "body": "", "data": "{}"}
    by_alias = client.get(PREVIEW, {**query, "device": "amelie"}).json()
    assert by_alias["content"]["title"] == "Hi Amélie"
    assert by_alias["device"]["id"] == str(amelie.pk)
    by_id = client.get(PREVIEW, {**query, "device": str(bare.pk)}).json()
    assert by_id["content"]["title"] == "Hi there"
    assert by_id["device"]["label"] == "bare" and by_id["device"]["locale"] == "fr"
    assert by_id["bytes"] < by_id["limit"] == 4096


def test_preview_picks_a_random_device_of_the_audience(client, marketer):
    app = make_app()
    for n in range(5):
        make_device(app, alias=f"vip{n}", tags=["vip"], attributes={"first_name": "V"})
    make_device(app, alias="other", attributes={"first_name": "O"})
    query = {
        "app": app.pk,
        "title": HI,
        "audience_kind": "filter",
        "tags_any": "vip",
    }
    seen = set()
    for _ in range(8):
        answer = client.get(PREVIEW, query).json()
        assert answer["content"]["title"] == "Hi V"
        seen.add(answer["device"]["alias"])
    # "Another" walks on from the device shown.
    first = client.get(PREVIEW, query).json()["device"]["id"]
    following = client.get(PREVIEW, {**query, "after": first}).json()["device"]["id"]
    assert following != first
    assert seen <= {f"vip{n}" for n in range(5)}


def test_preview_says_what_is_wrong_instead_of_rendering(client, marketer):
    app = make_app()
    answer = client.get(PREVIEW, {"app": app.pk, "title": "{{ x|nope }}"}).json()
    assert "unknown filter 'nope'" in answer["errors"]["title"][0]
    empty = client.get(PREVIEW, {"app": app.pk, "title": "t", "data": "null"}).json()
    assert empty["content"]["data"] == {}
    answer = client.get(PREVIEW, {"app": app.pk, "title": "t", "data": "[1]"}).json()
    assert answer["errors"] == {"data": ["Must be a JSON object."]}
    missing = client.get(PREVIEW, {"app": app.pk, "title": HI, "device": "ghost"})
    body = missing.json()
    assert body["content"]["title"] == "Hi there"
    assert body["device"] is None and "No device 'ghost'" in body["note"]


def test_preview_never_shows_devices_of_another_app_by_alias(client, marketer):
    app, other = make_app(), make_app()
    make_device(other, alias="theirs", attributes={"first_name": "Secret"})
    answer = client.get(
        PREVIEW, {"app": app.pk, "title": HI, "device": "theirs"}
    ).json()
    assert answer["content"]["title"] == "Hi there"
    assert answer["device"] is None


def test_the_composer_offers_the_sample_device_and_the_template_link(client, marketer):
    app = make_app()
    template = saved_templates.template_create(app=app, name="T", title=HI)
    page = client.get(f"{TEMPLATES}{template.pk}/change/").content.decode()
    assert 'id="kpns-sample"' in page and "preview.json" in page
    assert "Start a campaign from this template" in page
    composer = client.get("/admin/campaigns/campaign/add/").content.decode()
    assert 'id="preview-device"' in composer and "kpns/personalize.js" in composer


def test_preview_needs_a_campaign_or_template_view_permission(client):
    user = User.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    client.force_login(user)
    app = make_app()
    response = client.get(PREVIEW, {"app": app.pk, "title": HI})
    assert response.status_code == 403


def test_a_test_send_is_rendered_for_each_chosen_device(client, marketer):
    app = make_app()
    make_device(app, alias="amelie", attributes={"first_name": "Amélie"})
    make_device(app, alias="bare")
    campaign = Campaign.objects.get(
        pk=client.post(
            "/admin/campaigns/campaign/add/",
            campaign_form(app, title=HI, body="{{ alias }}"),
        )["Location"].split("/")[-3]
    )
    response = client.post(
        "/admin/campaigns/campaign/",
        {
            "action": "send_test",
            "_selected_action": [campaign.pk],
            "apply": "1",
            "devices": "amelie, bare",
        },
        follow=True,
    )
    assert "test sent to 2 device(s)" in response.content.decode()
    sent = {
        d.device.alias: (d.message.title, d.message.body)
        for d in Delivery.objects.select_related("device", "message")
    }
    assert sent == {
        "amelie": ("[Test] Hi Amélie", "amelie"),
        "bare": ("[Test] Hi there", "bare"),
    }
