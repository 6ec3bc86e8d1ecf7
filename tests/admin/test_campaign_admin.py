"""The campaign admin through Django's test client, as a Marketer and an admin."""

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from campaigns import sender
from campaigns.models import Campaign, CampaignStatus
from devices.models import Delivery
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(client):
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    client.force_login(user)
    return user


def campaign_form(app, **overrides):
    data = {
        "app": app.pk,
        "name": "Spring sale",
        "title": "Spring sale",
        "body": "20% off",
        "url": "",
        "image": "",
        "data": "{}",
        "audience_kind": "filter",
        "tags_any": "vip",
        "tags_all": "",
        "tags_none": "",
        "platforms": ["android", "ios"],
        "locales": "en",
        "app_versions": "",
        "aliases": "",
        "attributes": "",
        "device_ids": "",
        "send_at_0": "",
        "send_at_1": "",
        "ttl_seconds": "3600",
        "priority": "normal",
        "collapse_key": "",
        "throttle_per_second": "",
    }
    data.update(overrides)
    return data


def test_marketer_creates_a_campaign_with_a_filter_audience(client, marketer):
    app = make_app()
    response = client.post("/admin/campaigns/campaign/add/", campaign_form(app))
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get()
    assert campaign.audience == {
        "tags_any": ["vip"],
        "locales": ["en"],
        "platforms": ["android", "ios"],
    }
    assert campaign.created_by == marketer


def test_invalid_campaign_shows_field_errors(client, marketer):
    app = make_app()
    response = client.post(
        "/admin/campaigns/campaign/add/",
        campaign_form(
            app, title="", data="[1]", attributes='[{"key": "x", "op": "zz"}]'
        ),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "This field is required" in page
    assert "Must be a JSON object" in page
    assert "Attribute op must be one of" in page
    assert Campaign.objects.count() == 0


def test_change_page_shows_estimate_of_matching_and_online(client, marketer):
    app = make_app()
    make_device(app, tags=["vip"], platform="ios", locale="en-GB")
    make_device(app, tags=["vip"], platform="web", locale="en")
    client.post("/admin/campaigns/campaign/add/", campaign_form(app))
    campaign = Campaign.objects.get()
    page = client.get(
        f"/admin/campaigns/campaign/{campaign.pk}/change/"
    ).content.decode()
    assert '<strong id="est-matching">1</strong>' in page
    assert '<strong id="est-online">0</strong>' in page


def test_send_now_twice_sends_once_and_reports_the_refusal(client, marketer):
    app = make_app()
    make_device(app, tags=["vip"], platform="ios", locale="en")
    client.post("/admin/campaigns/campaign/add/", campaign_form(app))
    campaign = Campaign.objects.get()
    action = {"action": "send_now", "_selected_action": [campaign.pk]}
    client.post("/admin/campaigns/campaign/", action)
    response = client.post("/admin/campaigns/campaign/", action, follow=True)
    assert "cannot become scheduled" in response.content.decode()
    campaign.refresh_from_db()
    # Online devices are sent to within the request; this one is offline,
    # so the scheduler enqueues it.
    assert campaign.status == CampaignStatus.SENDING
    sender.send_due(now=timezone.now())
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert campaign.slices.count() == 1
    assert Delivery.objects.filter(message=campaign.message).count() == 1


def test_marketer_cannot_manage_apps_or_users(client, marketer):
    assert client.get("/admin/devices/app/").status_code == 403
    assert client.get("/admin/auth/user/").status_code == 403
    assert client.get("/admin/devices/device/").status_code == 200
    # Devices are view-only for the role: the revoke action is refused.
    revoke = client.post("/admin/devices/device/", {"action": "revoke"})
    assert revoke.status_code == 403


def test_stats_json_and_csv_export(client, marketer):
    from campaigns import lifecycle, sender

    app = make_app()
    device, _ = make_device(app, alias="user-7")
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    lifecycle.campaign_schedule_now(campaign=campaign)
    sender.send_due(now=campaign.slices.get().due_at)
    stats = client.get(f"/admin/campaigns/campaign/{campaign.pk}/stats.json").json()
    assert stats["stats"]["targeted"] == 1
    assert stats["status"] == "sent"
    assert stats["status_display"] == "Sent"
    csv_text = b"".join(
        client.get(
            f"/admin/campaigns/campaign/{campaign.pk}/results.csv"
        ).streaming_content
    ).decode()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("device_id,alias,platform,seq,status")
    assert lines[1].startswith(f"{device.pk},user-7,android,1,pending")
    assert Delivery.objects.count() == 1


def test_dashboard_shows_online_and_delivered_last_hour(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert 'id="dash-online">0<' in page
    assert "Messages delivered in the last hour" in page


def test_marketer_sets_a_cap_and_quiet_hours_of_the_campaigns_own(client, marketer):
    from datetime import time

    app = make_app()
    response = client.post(
        "/admin/campaigns/campaign/add/",
        campaign_form(
            app,
            frequency_cap_mode="custom",
            frequency_cap_count="2",
            frequency_cap_window_seconds="86400",
            quiet_hours_mode="custom",
            quiet_hours_start="21:30",
            quiet_hours_end="07:00",
            quiet_hours_action="skip",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get()
    assert (campaign.frequency_cap_count, campaign.frequency_cap_window_seconds) == (
        2,
        86400,
    )
    assert (campaign.quiet_hours_start, campaign.quiet_hours_end) == (
        time(21, 30),
        time(7, 0),
    )
    assert campaign.quiet_hours_action == "skip"
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content
    assert b"in each device&#x27;s own time zone: a device in Tokyo" in page


def test_a_custom_cap_without_a_number_is_an_error_at_the_field(client, marketer):
    app = make_app()
    response = client.post(
        "/admin/campaigns/campaign/add/",
        campaign_form(app, frequency_cap_mode="custom"),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "frequency_cap_count" in errors
    assert Campaign.objects.count() == 0


def test_csv_and_stats_json_count_a_capped_device(client, marketer):
    from datetime import timedelta

    from campaigns import lifecycle, sender
    from devices.delivery import caps
    from devices.models import App

    app = make_app()
    App.objects.filter(pk=app.pk).update(frequency_cap_count=1)
    sent, _ = make_device(app, alias="user-1")
    capped, _ = make_device(app, alias="user-2")
    now = timezone.now()
    caps.pushes_record([capped.pk], now=now - timedelta(hours=1))
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    lifecycle.campaign_schedule_now(campaign=campaign, now=now)
    sender.send_due(now=now)
    stats = client.get(f"/admin/campaigns/campaign/{campaign.pk}/stats.json").json()
    assert stats["pacing"] == {"capped": 1, "skipped": 0, "deferred": 0}
    assert stats["stats"]["targeted"] == 1
    csv_text = b"".join(
        client.get(
            f"/admin/campaigns/campaign/{campaign.pk}/results.csv"
        ).streaming_content
    ).decode()
    lines = csv_text.strip().splitlines()
    assert len(lines) == 3
    assert lines[1].startswith(f"{sent.pk},user-1,android,1,pending")
    assert lines[2].startswith(f"{capped.pk},user-2,android,,capped,,")


def test_pacing_json_explains_the_window_being_typed(client, marketer):
    app = make_app(name="Shop")
    client.cookies["kpns_tz"] = "Europe/Paris"
    body = client.get(
        "/admin/campaigns/campaign/pacing.json",
        {
            "app": app.pk,
            "frequency_cap_mode": "custom",
            "frequency_cap_count": "2",
            "frequency_cap_window_seconds": "3600",
            "quiet_hours_mode": "custom",
            "quiet_hours_start": "21:00",
            "quiet_hours_end": "06:30",
            "quiet_hours_action": "skip",
        },
    ).json()
    assert body["note"].startswith("The app Shop: no frequency cap; no quiet hours.")
    assert "a device in Tokyo gets a deferred push at 06:30 JST" in body["note"]
    assert "in your zone (Europe/Paris)" in body["note"]
    assert body["campaign"] == (
        "This campaign: at most 2 campaign pushes per device per 1 hour; quiet "
        "hours: 21:00-06:30 in each device's own time zone; devices in them "
        "are skipped."
    )
    half = client.get(
        "/admin/campaigns/campaign/pacing.json",
        {"app": app.pk, "frequency_cap_mode": "custom"},
    ).json()
    assert half["campaign"] == ""  # not complete: no summary yet
