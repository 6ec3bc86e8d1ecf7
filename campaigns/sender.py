"""Sending campaigns, one chunk per transaction.

A chunk locks one due slice (SKIP LOCKED, so schedulers share the work
without waiting on each other), enqueues the next devices of its audience
after the slice's cursor, moves the cursor and commits: all or nothing. A
scheduler that dies mid-campaign leaves the cursor at the last committed
chunk, and the next one continues from there, neither missing nor repeating
a device. Wake-ups go out after the commit.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import abtest, canary, content, lifecycle, pacing
from campaigns.models import Campaign, CampaignSlice, CampaignStatus
from devices.delivery import messages, wakeups
from devices.delivery.enqueue import Target, deliveries_write
from devices.models import Device, Message
from devices.registry.audience import audience_devices

logger = logging.getLogger(__name__)

CHUNK_SIZE = 5000
INLINE_CHUNKS = 10


@dataclass(frozen=True)
class ChunkResult:
    campaign_id: int
    enqueued: int
    finished: bool


def send_next_chunk(
    *, now: datetime, chunk_size: int = CHUNK_SIZE, campaign_id: int | None = None
) -> ChunkResult | None:
    """Advance one due slice (of one campaign, if given) by one chunk.

    Returns None when nothing is due.
    """
    with transaction.atomic():
        due = CampaignSlice.objects.select_for_update(
            skip_locked=True, of=("self",)
        ).filter(
            done=False,
            next_chunk_at__lte=now,
            campaign__status__in=[CampaignStatus.SCHEDULED, CampaignStatus.SENDING],
        )
        if campaign_id is not None:
            due = due.filter(campaign_id=campaign_id)
        slice_ = due.order_by("next_chunk_at").first()
        if slice_ is None:
            return None
        campaign = Campaign.objects.select_related("app").get(pk=slice_.campaign_id)
        if campaign.status == CampaignStatus.SCHEDULED:
            campaign = lifecycle.campaign_start(campaign_id=campaign.pk, now=now)
        if pacing.slice_held(campaign, slice_, now):
            return ChunkResult(campaign.pk, 0, False)  # quiet hours: later
        size = min(chunk_size, campaign.throttle_per_second or chunk_size)
        audience = _slice_devices(campaign, slice_).order_by("pk")
        plain = not (pacing.paced(campaign) or canary.has_waves(campaign))
        if plain and content.sends_one_content(campaign):
            # A plain campaign: every device gets the one message, so only
            # the ids are read (Device objects cost more than the write).
            ids = list(audience.values_list("pk", flat=True)[:size])
            plans = _plain_plans(campaign, slice_, ids, now)
        else:
            ids, plans = _chunk_plans(campaign, slice_, list(audience[:size]), now)
        # A chunk written again (a scheduler that died before its commit
        # was seen) skips the devices that already have the message.
        written = deliveries_write(
            plans, expires_at=slice_.expires_at, skip_existing=True
        )
        pacing.chunk_sent(
            campaign=campaign,
            slice_=slice_,
            targets=[target for targets in written.values() for target in targets],
            now=now,
        )
        if ids:
            slice_.cursor = str(ids[-1])
        if len(ids) < size:
            if slice_.online_pass:
                slice_.online_pass, slice_.cursor = False, ""
            else:
                slice_.done = True
        if campaign.throttle_per_second:
            slice_.next_chunk_at = now + timedelta(
                seconds=len(ids) / campaign.throttle_per_second
            )
        slice_.save(update_fields=["online_pass", "cursor", "done", "next_chunk_at"])
        finished = slice_.done and _finish_if_complete(campaign, now)
        wakes = [
            (messages.push_fields(message), written[message.pk])
            for message, _ids in plans
        ]
        transaction.on_commit(lambda: _wake(wakes))
    enqueued = sum(len(targets) for _push, targets in wakes)
    logger.info(
        "campaign chunk committed",
        extra={
            "campaign_id": campaign.pk,
            "messages": len(wakes),
            "enqueued": enqueued,
            "finished": finished,
        },
    )
    return ChunkResult(campaign.pk, enqueued, finished)


def campaign_send_now(*, campaign: Campaign, by: object = None) -> Campaign:
    """Schedule for now and send to the online devices at once, here.

    The online pass (devices connected now) is sent here, up to
    INLINE_CHUNKS chunks; the scheduler sends the rest. This saves its poll
    interval, and in the embedded default it wakes sockets of this very
    process without waiting for the sweep.
    """
    now = timezone.now()
    campaign = lifecycle.campaign_schedule_now(campaign=campaign, by=by, now=now)
    online = campaign.slices.filter(online_pass=True, done=False)
    for _ in range(INLINE_CHUNKS):
        if not online.exists():
            break
        if send_next_chunk(now=now, campaign_id=campaign.pk) is None:
            break
    return campaign


def send_due(*, now: datetime, max_chunks: int = 1000) -> int:
    """Send chunks until nothing is due (bounded). Returns chunks sent."""
    for count in range(max_chunks):
        if send_next_chunk(now=now) is None:
            return count
    return max_chunks


def _plain_plans(
    campaign: Campaign, slice_: CampaignSlice, ids: list[Any], now: datetime
) -> list[tuple[Message, list[Any]]]:
    if not ids:
        return []
    message = content.base_message(campaign, expires_at=slice_.expires_at, now=now)
    return [(message, ids)]


def _chunk_plans(
    campaign: Campaign, slice_: CampaignSlice, devices: list[Device], now: datetime
) -> tuple[list[Any], list[tuple[Message, list[Any]]]]:
    """The chunk's ids, and each content's message with its devices."""
    ids = [device.pk for device in devices]
    # An A/B test's devices due now: the test group, or (once the winner
    # is known) everyone not sent one yet (campaigns.content).
    due_now = content.devices_due(campaign, devices)
    # A canary rollout: only the released wave's devices (campaigns.canary).
    due_now = canary.devices_in_wave(campaign, due_now)
    # Frequency cap and quiet hours (skip mode) leave devices out.
    sendable = set(
        pacing.chunk_sendable(
            campaign=campaign,
            slice_=slice_,
            ids=[device.pk for device in due_now],
            now=now,
        )
    )
    # Each device's variant, language and rendered content: one message
    # per distinct content, all in this one write.
    plans = content.chunk_plans(
        campaign,
        [device for device in due_now if device.pk in sendable],
        expires_at=slice_.expires_at,
        now=now,
    )
    return ids, plans


def _slice_devices(campaign: Campaign, slice_: CampaignSlice):  # type: ignore[no-untyped-def]
    devices = audience_devices(campaign.app, campaign.audience_kind, campaign.audience)
    devices = pacing.devices_undecided(campaign, devices)
    if slice_.online_pass:
        devices = devices.filter(node__isnull=False)
    if slice_.cursor:
        devices = devices.filter(pk__gt=uuid.UUID(slice_.cursor))
    if slice_.timezone:
        zone_q = Q(timezone=slice_.timezone)
        if slice_.timezone == campaign.app.default_timezone:
            zone_q |= Q(timezone="")
        devices = devices.filter(zone_q)
    return devices


def _wake(wakes: list[tuple[dict[str, Any], list[Target]]]) -> None:
    for push, targets in wakes:
        wakeups.wake_targets(push, targets)


def _finish_if_complete(campaign: Campaign, now: datetime) -> bool:
    if campaign.slices.filter(done=False).exists():
        return False
    if abtest.awaits_winner(campaign):
        return False  # the test group is sent; the rest waits for the winner
    if canary.awaits_wave(campaign):
        canary.wave_sent(campaign=campaign, now=now)
        return False  # the wave is sent; the next waits for its verdict
    if lifecycle.slices_add_missing(campaign=campaign, now=now):
        return False
    lifecycle.campaign_finish(campaign=campaign, now=now)
    return True
