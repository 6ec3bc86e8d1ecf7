"""Canary waves on the campaign page, and pause, resume and promote with
their confirmation pages, as a Marketer through Django's test client."""

import zoneinfo
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from campaigns import canary, lifecycle, sender
from campaigns.models import Campaign, CampaignStatus
from tests.admin.test_admin_actions import CAMPAIGNS, action, hidden_fields, marketer
from tests.admin.test_campaign_admin import campaign_form
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

__all__ = ["marketer"]


def sending_canary(app, **fields):
    campaign = lifecycle.campaign_create(
        app=app,
        name="Staged",
        title="t",
        wave_percents=[20, 100],
        wave_hold_seconds=600,
        canary_min_delivery_rate=90,
        **fields,
    )
    sender.campaign_send_now(campaign=campaign)
    sender.send_due(now=timezone.now())
    return Campaign.objects.get(pk=campaign.pk)


def confirm(client, name, campaign):
    asked = client.post(CAMPAIGNS, action(name, campaign))
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Staged" in page and 'name="post" value="yes"' in page
    # Nothing happens before the confirmation.
    assert Campaign.objects.get(pk=campaign.pk).status == campaign.status
    done = client.post(CAMPAIGNS, hidden_fields(page), follow=True)
    assert done.status_code == 200
    return Campaign.objects.get(pk=campaign.pk), done.content.decode()


def test_pause_resume_and_promote_ask_first_then_act(client, marketer):
    app = make_app()
    for _ in range(40):
        make_device(app)
    campaign = sending_canary(app)
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    assert 'value="pause"' in page and 'value="promote"' in page
    assert 'value="resume"' not in page
    campaign, shown = confirm(client, "pause", campaign)
    assert campaign.status == CampaignStatus.PAUSED
    assert "Staged: paused." in shown
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    assert 'value="resume"' in page and 'value="pause"' not in page
    campaign, _ = confirm(client, "resume", campaign)
    assert campaign.status == CampaignStatus.SENDING
    campaign, shown = confirm(client, "promote", campaign)
    assert campaign.wave == 1
    assert campaign.canary_reason == "Wave 2 released by mary"
    sender.send_due(now=timezone.now() + timedelta(seconds=1))
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT


def test_the_page_shows_each_wave_and_why_it_aborted(client, marketer):
    app = make_app()
    for _ in range(40):
        make_device(app)
    campaign = sending_canary(app)
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    assert 'id="wave-stats"' in page and 'data-wave="2"' in page
    # Its settings, read only, in a box of their own.
    assert ">Canary rollout</h2>" in page or "Canary rollout</summary>" in page
    assert "kpns-wave-holding" in page and "kpns-wave-waiting" in page
    canary.waves_judge_due(now=timezone.now() + timedelta(seconds=601))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    # The marketer's zone (the cookie the admin's script sets): the abort
    # time is shown in it, as every time on the page; the API keeps UTC.
    client.cookies["kpns_tz"] = "Asia/Tokyo"
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    tokyo = campaign.canary_verdict_at.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    utc = campaign.canary_verdict_at.astimezone(UTC)
    assert campaign.canary_reason.endswith(f"aborted at {utc:%H:%M} UTC")
    assert f"Wave 1: delivery rate 0% &lt; 90%: aborted at {tokyo:%H:%M}<" in page
    assert f"{utc:%H:%M} UTC" not in page
    assert "kpns-wave-failed" in page
    assert "(threshold ≥ 90%) ✗" in page
    # Nothing left to pause, resume or promote.
    assert 'value="promote"' not in page and 'value="pause"' not in page


def test_the_composer_saves_waves_and_thresholds(client, marketer):
    app = make_app()
    make_device(app)
    form = campaign_form(
        app,
        wave_percents="1, 10%, 100",
        wave_hold_seconds="30m",
        canary_min_delivery_rate="90",
        canary_action="pause",
        canary_recall_on_abort="on",
    )
    created = client.post(f"{CAMPAIGNS}add/", form)
    assert created.status_code == 302, created.content.decode()[:2000]
    campaign = Campaign.objects.get()
    assert campaign.wave_percents == [1, 10, 100]
    assert campaign.wave_hold_seconds == 1800
    assert (campaign.canary_min_delivery_rate, campaign.canary_action) == (90, "pause")
    assert campaign.canary_recall_on_abort
    bad = client.post(f"{CAMPAIGNS}add/", {**form, "wave_percents": "10, 5"})
    assert bad.status_code == 200
    assert "Each wave must be larger than the one before." in bad.content.decode()
    assert Campaign.objects.count() == 1
    # Without the fields (an older form): no waves, the model's defaults.
    plain = client.post(f"{CAMPAIGNS}add/", campaign_form(app, name="Plain"))
    assert plain.status_code == 302
    made = Campaign.objects.get(name="Plain")
    assert (made.wave_percents, made.wave_hold_seconds) == ([], 3600)
    assert made.canary_action == "abort" and not made.canary_recall_on_abort
