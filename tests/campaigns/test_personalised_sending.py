"""A personalised campaign through the real sender: each device its own
content, one message per distinct content, made in bulk per chunk."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import content, lifecycle, sender
from campaigns.models import CampaignMessage
from devices.models import Delivery, Device, Message
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

HI = 'Hi {{ first_name|default:"there" }}'


def send(campaign):
    lifecycle.campaign_schedule_now(campaign=campaign)
    while sender.send_due(now=timezone.now()):
        pass


def test_each_device_gets_its_rendering_and_equal_ones_share_a_message():
    app = make_app()
    names = ["Amélie", "Bruno", "Amélie", None]
    for index, name in enumerate(names):
        attributes = {"first_name": name} if name else {}
        make_device(app, alias=f"d{index}", attributes=attributes)
    campaign = lifecycle.campaign_create(
        app=app, name="c", title=HI, audience_kind="all"
    )
    send(campaign)
    titles = dict(Delivery.objects.values_list("device__alias", "message__title"))
    assert titles == {
        "d0": "Hi Amélie",
        "d1": "Hi Bruno",
        "d2": "Hi Amélie",
        "d3": "Hi there",
    }
    sent = Delivery.objects.values("message_id").distinct().count()
    assert sent == 3  # the two Amélies share one
    links = CampaignMessage.objects.filter(campaign=campaign).count()
    assert links == 4  # and the campaign's own content as written


def test_a_chunk_of_distinct_contents_costs_a_fixed_number_of_queries(
    django_assert_max_num_queries,
):
    app = make_app()
    for index in range(60):
        make_device(app, attributes={"first_name": f"N{index}"})
    campaign = lifecycle.campaign_create(
        app=app, name="c", title=HI, audience_kind="all"
    )
    devices = list(Device.objects.filter(app=app))
    later = timezone.now() + timedelta(days=1)
    with django_assert_max_num_queries(8):
        plans = content.chunk_plans(
            campaign, devices, expires_at=later, now=timezone.now()
        )
    assert len(plans) == 60
    assert len({message.pk for message, _ids in plans}) == 60
    # The same chunk again (a scheduler that died before its commit was
    # seen) finds every message and makes none.
    again = content.chunk_plans(
        campaign, devices, expires_at=later + timedelta(days=1), now=timezone.now()
    )
    assert {m.pk for m, _ in again} == {m.pk for m, _ in plans}
    assert CampaignMessage.objects.filter(campaign=campaign).count() == 60
    # Reused by a later slice: each lives as long as it.
    assert {m.expires_at for m, _ in again} == {later + timedelta(days=1)}
    stored = Message.objects.filter(pk__in=[m.pk for m, _ in again])
    assert set(stored.values_list("expires_at", flat=True)) == {
        later + timedelta(days=1)
    }
