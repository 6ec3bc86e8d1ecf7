"""Admin actions: who may run them, and destructive ones asking first."""

import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Campaign, CampaignStatus
from devices.models import ApiKey, Device, Message
from tests.factories import make_api_key, make_app, make_device

pytestmark = pytest.mark.django_db

DEVICES = "/admin/devices/device/"
CAMPAIGNS = "/admin/campaigns/campaign/"


@pytest.fixture
def marketer(client):
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    client.force_login(user)
    return user


@pytest.fixture
def boss(client):
    user = User.objects.create_superuser("boss", "", "pw-boss-123")
    client.force_login(user)
    return user


def action(name, *objects, **extra):
    return {"action": name, "_selected_action": [str(o.pk) for o in objects], **extra}


def hidden_fields(html):
    """The name/value pairs a confirmation page posts back."""
    form = html[html.index('<form method="post"') :]
    form = form[: form.index("</form>")]
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    posted = {}
    for name, value in fields:
        posted.setdefault(name, []).append(value)
    return posted


def test_every_admin_action_declares_its_permission():
    """Without permissions= Django offers an action to anyone who can view."""
    undeclared = [
        f"{model._meta.label}.{name}"
        for model, model_admin in admin.site._registry.items()
        for func, name, _description in model_admin._get_base_actions()
        if not getattr(func, "allowed_permissions", None)
    ]
    assert not undeclared


# Marketers (view-only on devices) ---------------------------------------------


def test_marketer_is_not_offered_device_actions(client, marketer):
    app = make_app()
    make_device(app, alias="alice")
    page = client.get(DEVICES).content.decode()
    assert "alice" in page
    assert 'value="revoke"' not in page
    assert 'value="send_test_push"' not in page


def test_marketer_posting_revoke_is_refused_and_revokes_nothing(client, marketer):
    app = make_app()
    device, _ = make_device(app)
    for body in (action("revoke", device), action("revoke", device, post="yes")):
        assert client.post(DEVICES, body).status_code == 403
    device.refresh_from_db()
    assert device.is_active and device.revoked_at is None


def test_marketer_posting_test_push_is_refused_and_sends_nothing(client, marketer):
    app = make_app()
    device, _ = make_device(app)
    body = action("send_test_push", device, apply="1", title="hi", body="")
    assert client.post(DEVICES, body).status_code == 403
    assert not Message.objects.exists()


def test_marketer_still_runs_the_campaign_actions_of_the_role(client, marketer):
    app = make_app()
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    response = client.post(CAMPAIGNS, action("duplicate", campaign))
    assert response.status_code == 302
    assert Campaign.objects.filter(name="c (copy)").exists()


# Revoking devices asks first ----------------------------------------------------


def test_revoke_without_confirmation_lists_the_devices_and_revokes_nothing(
    client, boss
):
    app = make_app()
    alice, _ = make_device(app, alias="alice")
    bob, _ = make_device(app, alias="bob")
    response = client.post(DEVICES, action("revoke", alice, bob))
    assert response.status_code == 200
    page = response.content.decode()
    assert "2 devices" in page
    assert "android:alice" in page and "android:bob" in page
    assert 'name="post" value="yes"' in page
    assert Device.objects.filter(is_active=True).count() == 2


def test_revoke_with_confirmation_revokes_only_the_selected(client, boss):
    app = make_app()
    alice, _ = make_device(app, alias="alice")
    bob, _ = make_device(app, alias="bob")
    asked = client.post(DEVICES, action("revoke", alice)).content.decode()
    # Answer the page the way a browser would: post back its own fields.
    response = client.post(DEVICES, hidden_fields(asked))
    assert response.status_code == 302
    alice.refresh_from_db()
    bob.refresh_from_db()
    assert not alice.is_active and alice.revoked_at is not None
    assert bob.is_active


def test_get_with_an_action_in_the_query_string_does_nothing(client, boss):
    app = make_app()
    device, _ = make_device(app)
    query = f"?action=revoke&post=yes&_selected_action={device.pk}"
    # Django sends unknown query parameters back to the list (?e=1).
    assert client.get(DEVICES + query).status_code in (200, 302)
    device.refresh_from_db()
    assert device.is_active


def test_select_across_is_carried_through_the_confirmation(client, boss):
    app = make_app()
    devices = [make_device(app, alias=f"d{i}")[0] for i in range(3)]
    body = action("revoke", devices[0], select_across="1", index="0")
    asked = client.post(DEVICES, body).content.decode()
    assert "3 devices" in asked
    assert not Device.objects.filter(is_active=False).exists()
    client.post(DEVICES, hidden_fields(asked))
    assert not Device.objects.filter(is_active=True).exists()


def test_admin_test_push_still_works(client, boss):
    app = make_app()
    device, _ = make_device(app)
    body = action("send_test_push", device, apply="1", title="hi", body="there")
    assert client.post(DEVICES, body).status_code == 302
    assert Message.objects.get().title == "hi"


# API keys and campaigns ------------------------------------------------------------


def test_api_key_revoke_asks_first(client, boss):
    app = make_app()
    api_key, _ = make_api_key(app, name="ci")
    asked = client.post("/admin/devices/apikey/", action("revoke", api_key))
    assert asked.status_code == 200
    assert "ci (" in asked.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    done = client.post("/admin/devices/apikey/", hidden_fields(asked.content.decode()))
    assert done.status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None


def test_cancelling_a_sending_campaign_asks_first_then_cancels(client, marketer):
    app = make_app()
    make_device(app)
    campaign = lifecycle.campaign_create(app=app, name="Spring sale", title="t")
    lifecycle.campaign_schedule_now(campaign=campaign)
    lifecycle.campaign_start(campaign_id=campaign.pk, now=timezone.now())
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    asked = client.post(CAMPAIGNS, action("cancel", campaign))
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Spring sale" in page and "Sending" in page
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    done = client.post(CAMPAIGNS, hidden_fields(page), follow=True)
    assert "Spring sale: cancelled." in done.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED


def test_campaign_page_offers_only_the_actions_the_user_may_run(client):
    app = make_app()
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    viewer = User.objects.create_user("vic", password="pw-vic-12345", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(viewer)
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    assert "kpns-audience-live" in page
    assert 'value="cancel"' not in page
    assert 'name="_send_now"' not in page
    assert client.post(CAMPAIGNS, action("cancel", campaign)).status_code == 403


def test_cancel_button_of_the_campaign_page_leads_to_the_confirmation(client, marketer):
    """The panel's buttons post the actions form after the change form."""
    app = make_app()
    campaign = lifecycle.campaign_create(app=app, name="Autumn", title="t")
    campaign = lifecycle.campaign_schedule(
        campaign=campaign, send_at=timezone.now() + timedelta(hours=1)
    )
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    assert 'form="kpns-campaign-actions" name="action" value="cancel"' in page
    form = re.search(
        r'<form id="kpns-campaign-actions" method="post" action="([^"]+)">(.*?)</form>',
        page,
        re.S,
    )
    assert form.group(1) == CAMPAIGNS
    selected = re.findall(r'name="_selected_action" value="(\d+)"', form.group(2))
    assert selected == [str(campaign.pk)]
    assert 'name="return_to" value="change"' in form.group(2)
    asked = client.post(
        form.group(1),
        {"action": "cancel", "_selected_action": selected, "return_to": "change"},
    )
    assert "Autumn (Scheduled, 0 not delivered yet)" in asked.content.decode()
    done = client.post(form.group(1), hidden_fields(asked.content.decode()))
    # Back on the campaign, not the list.
    assert done["Location"] == f"{CAMPAIGNS}{campaign.pk}/change/"
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
