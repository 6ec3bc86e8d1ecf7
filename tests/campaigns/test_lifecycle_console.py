"""The lifecycle rules behind the marketer's console (issue 17), shared by the
admin and the API: scheduled campaigns edited, unscheduled and sent now;
audiences that contradict themselves; send times in the past; tags."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from campaigns import lifecycle, sender
from campaigns.models import CampaignStatus
from devices.models import Delivery
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_campaign(app, **fields):
    fields.setdefault("name", "Spring sale")
    fields.setdefault("title", "Spring sale")
    return lifecycle.campaign_create(app=app, **fields)


def scheduled(app, now=NOON, **fields):
    campaign = make_campaign(app, **fields)
    return lifecycle.campaign_schedule(
        campaign=campaign, send_at=now + timedelta(hours=2), now=now
    )


def test_a_scheduled_campaign_is_edited_and_its_slice_follows():
    app = make_app()
    campaign = scheduled(app)
    later = NOON + timedelta(hours=5)
    edited = lifecycle.campaign_update(
        campaign=campaign, title="New title", send_at=later, now=NOON
    )
    assert edited.status == CampaignStatus.SCHEDULED
    assert edited.title == "New title"
    assert list(edited.slices.values_list("due_at", flat=True)) == [later]


def test_a_scheduled_campaign_is_unscheduled_back_to_a_draft():
    app = make_app()
    campaign = scheduled(app)
    draft = lifecycle.campaign_unschedule(campaign=campaign)
    assert draft.status == CampaignStatus.DRAFT
    assert not draft.slices.exists()
    assert draft.sent_by is None


def test_a_scheduled_campaign_is_sent_now_once():
    app = make_app()
    make_device(app)
    campaign = scheduled(app, now=datetime.now(UTC))
    sender.campaign_send_now(campaign=campaign)
    sender.send_due(now=datetime.now(UTC))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    assert campaign.slices.count() == 1
    assert Delivery.objects.filter(message=campaign.message).count() == 1
    with pytest.raises(lifecycle.CampaignStateError):
        sender.campaign_send_now(campaign=campaign)


def test_sent_campaigns_cannot_be_edited():
    app = make_app()
    campaign = make_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    with pytest.raises(lifecycle.CampaignStateError):
        lifecycle.campaign_update(campaign=campaign, title="late")


def test_conditions_under_everyone_are_refused_not_ignored():
    app = make_app()
    with pytest.raises(ValidationError) as caught:
        make_campaign(app, audience_kind="all", audience={"tags_any": ["vip"]})
    assert "audience_kind" in caught.value.message_dict


def test_a_filter_without_conditions_is_refused():
    app = make_app()
    with pytest.raises(ValidationError) as caught:
        make_campaign(app, audience_kind="filter", audience={})
    assert "A filter needs at least one condition" in str(caught.value)


def test_tags_follow_the_device_tag_rule():
    app = make_app()
    with pytest.raises(ValidationError) as caught:
        make_campaign(app, audience_kind="filter", audience={"tags_any": ["v i p!"]})
    assert "no device can have the tag 'v i p!'" in str(caught.value)
    ok = make_campaign(
        app, audience_kind="filter", audience={"tags_none": ["plan:pro-2.1_x"]}
    )
    assert ok.audience == {"tags_none": ["plan:pro-2.1_x"]}


def test_send_times_in_the_past_are_refused_at_once():
    app = make_app()
    now = datetime.now(UTC)
    with pytest.raises(ValidationError) as caught:
        make_campaign(app, send_at=now - timedelta(hours=1))
    assert caught.value.message_dict == {"send_at": ["That time is in the past."]}
    # A local time an hour ago is still ahead in the zones west of here.
    local = make_campaign(app, send_at=now - timedelta(hours=1), local_time=True)
    with pytest.raises(ValidationError):
        lifecycle.campaign_update(
            campaign=local, send_at=now - timedelta(days=2), local_time=True
        )
