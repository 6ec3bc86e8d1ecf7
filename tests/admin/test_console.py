"""Issue 17, the marketer's console: each bug found in the browser, through
Django's test client as a Marketer."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from campaigns import lifecycle, sender
from campaigns.durations import duration_format, duration_parse
from campaigns.models import Campaign, CampaignStatus
from devices.delivery.receipts import delivered_fields
from devices.models import Delivery
from tests.admin.test_campaign_admin import campaign_form
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

CAMPAIGNS = "/admin/campaigns/campaign/"


@pytest.fixture
def marketer(client):
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    client.force_login(user)
    return user


def change_url(campaign):
    return f"{CAMPAIGNS}{campaign.pk}/change/"


def test_tags_under_all_devices_are_refused_not_sent_to_everyone(client, marketer):
    app = make_app()
    form = campaign_form(app, audience_kind="all", confirm_everyone="on")
    page = client.post(f"{CAMPAIGNS}add/", form).content.decode()
    assert "Conditions are filled in but the audience is every device" in page
    assert not Campaign.objects.exists()


def test_a_filter_without_conditions_is_refused(client, marketer):
    app = make_app()
    form = campaign_form(app, tags_any="", locales="", platforms=[])
    page = client.post(f"{CAMPAIGNS}add/", form).content.decode()
    assert "A filter needs at least one condition" in page
    assert not Campaign.objects.exists()


def test_everyone_is_said_and_confirmed(client, marketer):
    app = make_app()
    for _ in range(3):
        make_device(app)
    everyone = campaign_form(
        app, audience_kind="all", tags_any="", locales="", platforms=[]
    )
    page = client.post(f"{CAMPAIGNS}add/", everyone).content.decode()
    assert "This campaign goes to every device of the app (3)" in page
    assert not Campaign.objects.exists()
    response = client.post(f"{CAMPAIGNS}add/", {**everyone, "confirm_everyone": "on"})
    assert response.status_code == 302
    assert Campaign.objects.get().audience_kind == "all"


def test_live_estimate_counts_the_audience_being_typed(client, marketer):
    app = make_app()
    vip, _ = make_device(app, tags=["vip"])
    make_device(app, tags=["other"])
    from devices.models import Device

    Device.objects.filter(pk=vip.pk).update(node="n1")
    url = f"{CAMPAIGNS}estimate.json"
    body = client.get(
        url, {"app": app.pk, "audience_kind": "filter", "tags_any": "vip"}
    )
    assert body.json() == {"matching": 1, "online": 1, "everyone": False, "total": 2}
    everyone = client.get(url, {"app": app.pk, "audience_kind": "all"}).json()
    assert everyone["everyone"] is True and everyone["matching"] == 2
    refused = client.get(
        url, {"app": app.pk, "audience_kind": "all", "tags_any": "vip"}
    ).json()
    assert "every device" in refused["error"]
    bad_tag = client.get(
        url, {"app": app.pk, "audience_kind": "filter", "tags_any": "v i p!"}
    ).json()
    assert "no device can have the tag" in bad_tag["error"]


def test_local_time_is_explained_with_the_first_and_last_zone(client, marketer):
    app = make_app()
    make_device(app, timezone="Asia/Tokyo")
    make_device(app, timezone="America/New_York")
    client.cookies["kpns_tz"] = "Europe/Paris"
    body = client.get(
        f"{CAMPAIGNS}estimate.json",
        {
            "app": app.pk,
            "audience_kind": "all",
            "local_time": "1",
            "send_at_0": "2030-03-04",
            "send_at_1": "09:00",
        },
    ).json()
    note = body["local_note"]
    assert note.startswith("09:00 in each device's zone: Asia/Tokyo first, at 01:00")
    assert "(Europe/Paris)" in note and "America/New_York last, at 15:00" in note


def test_send_now_saves_the_edits_on_screen_first(client, marketer):
    app = make_app()
    make_device(app, tags=["vip"], platform="ios", locale="en")
    client.post(f"{CAMPAIGNS}add/", campaign_form(app))
    campaign = Campaign.objects.get()
    edited = campaign_form(app, title="New title", _send_now="1")
    response = client.post(change_url(campaign), edited)
    assert response.status_code == 302
    assert response["Location"] == change_url(campaign)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    assert campaign.message.title == "New title"


def test_send_now_with_invalid_edits_sends_nothing(client, marketer):
    app = make_app()
    client.post(f"{CAMPAIGNS}add/", campaign_form(app))
    campaign = Campaign.objects.get()
    page = client.post(
        change_url(campaign), campaign_form(app, title="", _send_now="1")
    )
    assert page.status_code == 200
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT and campaign.message is None


def test_scheduled_campaign_is_edited_unscheduled_and_sent_now(client, marketer):
    app = make_app()
    make_device(app, tags=["vip"], platform="ios", locale="en")
    client.post(f"{CAMPAIGNS}add/", campaign_form(app))
    campaign = Campaign.objects.get()
    when = timezone.now() + timedelta(days=1)
    lifecycle.campaign_schedule(campaign=campaign, send_at=when, by=marketer)
    page = client.get(change_url(campaign)).content.decode()
    assert 'name="_unschedule"' in page and 'name="_send_now"' in page
    assert "Scheduled by" in page and "Sent by" not in page
    day = timezone.localtime(when)
    form = campaign_form(
        app,
        title="Edited while scheduled",
        send_at_0=day.strftime("%Y-%m-%d"),
        send_at_1=day.strftime("%H:%M:%S"),
    )
    assert client.post(change_url(campaign), form).status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    assert campaign.title == "Edited while scheduled"
    client.post(change_url(campaign), {**form, "_unschedule": "1"})
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
    lifecycle.campaign_schedule(campaign=campaign, send_at=when)
    client.post(change_url(campaign), {**form, "_send_now": "1"})
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING


def test_a_send_time_in_the_past_is_refused_at_the_field(client, marketer):
    app = make_app()
    form = campaign_form(app, send_at_0="2020-01-01", send_at_1="10:00")
    page = client.post(f"{CAMPAIGNS}add/", form).content.decode()
    assert "That time is in the past." in page
    assert not Campaign.objects.exists()


def test_an_empty_data_box_means_no_data(client, marketer):
    app = make_app()
    response = client.post(f"{CAMPAIGNS}add/", campaign_form(app, data=""))
    assert response.status_code == 302
    assert Campaign.objects.get().data == {}


def test_a_tag_no_device_can_have_is_refused_at_its_box(client, marketer):
    app = make_app()
    page = client.post(
        f"{CAMPAIGNS}add/", campaign_form(app, tags_any="v i p!")
    ).content.decode()
    assert "no device can have the tag" in page
    assert not Campaign.objects.exists()


def test_ttl_is_written_and_shown_in_human_units(client, marketer):
    app = make_app()
    client.post(f"{CAMPAIGNS}add/", campaign_form(app, ttl_seconds="1d 12h"))
    campaign = Campaign.objects.get()
    assert campaign.ttl_seconds == 36 * 3600
    page = client.get(change_url(campaign)).content.decode()
    assert 'value="1d 12h"' in page
    assert duration_parse("7d") == 604800 and duration_format(1800) == "30m"
    bad = client.post(f"{CAMPAIGNS}add/", campaign_form(app, ttl_seconds="soon"))
    assert "Write a duration such as 7d" in bad.content.decode()


def test_a_sent_campaign_is_a_read_only_page_with_the_actions_that_apply(
    client, marketer
):
    app = make_app()
    make_device(app)
    campaign = lifecycle.campaign_create(app=app, name="Done", title="t")
    lifecycle.campaign_schedule_now(campaign=campaign)
    sender.send_due(now=timezone.now())
    page = client.get(change_url(campaign)).content.decode()
    assert "Sent campaign" in page and "Change campaign" not in page
    assert 'name="_save"' not in page and "deletelink" not in page
    assert 'name="_send_now"' not in page and 'name="_schedule"' not in page
    assert 'value="duplicate"' in page
    assert "Sent by" in page
    assert client.post(change_url(campaign), {}).status_code == 403


def test_actions_from_the_campaign_page_land_back_on_it(client, marketer):
    app = make_app()
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    response = client.post(
        CAMPAIGNS,
        {
            "action": "duplicate",
            "_selected_action": [campaign.pk],
            "return_to": "change",
        },
    )
    copy = Campaign.objects.get(name="c (copy)")
    assert response["Location"] == change_url(copy)
    saved = client.post(
        change_url(campaign),
        campaign_form(app, name="c", tags_any="vip"),
    )
    assert saved["Location"] == change_url(campaign)


def test_times_are_in_the_marketers_zone_and_named(client, marketer):
    app = make_app()
    campaign = lifecycle.campaign_create(
        app=app,
        name="c",
        title="t",
        send_at=datetime(2030, 1, 1, 13, 0, tzinfo=UTC),
    )
    client.cookies["kpns_tz"] = "Europe/Paris"
    page = client.get(change_url(campaign)).content.decode()
    assert "Times in <strong>Europe/Paris</strong>" in page
    assert 'value="14:00:00"' in page  # 13:00 UTC is 14:00 in Paris
    form = campaign_form(app, send_at_0="2030-01-01", send_at_1="09:00")
    client.post(change_url(campaign), form)
    campaign.refresh_from_db()
    assert campaign.send_at == datetime(2030, 1, 1, 8, 0, tzinfo=UTC)


def test_a_local_time_is_kept_as_written_whatever_the_marketers_zone(client, marketer):
    app = make_app()
    client.cookies["kpns_tz"] = "Asia/Tokyo"
    form = campaign_form(
        app, send_at_0="2030-01-01", send_at_1="09:00", local_time="on"
    )
    assert client.post(f"{CAMPAIGNS}add/", form).status_code == 302
    campaign = Campaign.objects.get()
    # 09:00 in each device's zone, kept as the wall clock in UTC.
    assert campaign.send_at == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    assert 'value="09:00:00"' in client.get(change_url(campaign)).content.decode()


def test_csv_sent_at_is_the_send_time_not_the_delivery_time(client, marketer):
    app = make_app()
    make_device(app)
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    lifecycle.campaign_schedule_now(campaign=campaign)
    sender.send_due(now=timezone.now())
    later = timezone.now() + timedelta(minutes=5)
    Delivery.objects.update(**delivered_fields(later))
    row = Delivery.objects.get()
    text = b"".join(
        client.get(f"{CAMPAIGNS}{campaign.pk}/results.csv").streaming_content
    ).decode()
    header, line = text.strip().splitlines()
    values = dict(zip(header.split(","), line.split(","), strict=True))
    assert values["sent_at"] == row.created_at.isoformat()
    assert values["delivered_at"] == later.isoformat()
    assert values["sent_at"] != values["delivered_at"]


def test_campaign_list_has_the_figures_marketers_sort_by(client, marketer):
    app = make_app()
    make_device(app, tags=["vip"])
    campaign = lifecycle.campaign_create(
        app=app, name="Flash", title="t", audience_kind="filter",
        audience={"tags_any": ["vip"]},
    )  # fmt: skip
    lifecycle.campaign_schedule_now(campaign=campaign)
    sender.send_due(now=timezone.now())
    Delivery.objects.update(**delivered_fields(timezone.now()))
    page = client.get(CAMPAIGNS).content.decode()
    # Every figure column is a sort link (Django's ?o=N headers).
    for column in ("Status", "Audience", "Sent", "Delivered", "Opened", "Sent at"):
        assert re.search(rf'<a href="\?o=[^"]*">{column}</a>', page), column
    assert "tags vip" in page and "kpns-status-sent" in page
    assert client.get(CAMPAIGNS, {"o": "5"}).status_code == 200
    assert client.get(CAMPAIGNS, {"o": "-6"}).status_code == 200


def test_device_list_shows_a_short_id_tags_and_a_tag_filter(client, marketer):
    app = make_app()
    vip, _ = make_device(app, tags=["vip", "beta"], alias="alice")
    make_device(app, tags=["other"], alias="bob")
    page = client.get("/admin/devices/device/").content.decode()
    assert f">{str(vip.pk)[:8]}…<" in page
    assert str(vip.pk) not in page.replace(f'title="{vip.pk}"', "").replace(
        f"/{vip.pk}/", ""
    )
    assert "beta, vip" in page
    assert "?tag=vip" in page
    filtered = client.get("/admin/devices/device/", {"tag": "vip"}).content.decode()
    assert "alice" in filtered and "bob" not in filtered
