"""Campaign lifecycle: every state change goes through ``_transition``.

draft -> scheduled -> sending -> sent, or cancelled / failed (a sent
campaign can still be cancelled: that withdraws its undelivered rest). A
scheduled campaign can be edited (its slices are made again), sent now, or
unscheduled back to a draft. The change is
made under the campaign's row lock, so two clicks, two admins or two
schedulers can never move a campaign twice (a double "Send now" sends once).
"""

import json
import zoneinfo
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from campaigns import canary, content, pacing, personalize, segments
from campaigns import variants as variant_rules
from campaigns.models import AudienceKind, Campaign, CampaignSlice, CampaignStatus
from campaigns.selectors import campaign_delivery_stats, campaign_message_ids
from devices.delivery import messages, pushes, receipts
from devices.integrations import webhooks
from devices.models import DeliveryStatus, Device, Message, WebhookEvent
from devices.registry.audience import audience_devices, audience_validate

TRANSITIONS: dict[str, set[str]] = {
    CampaignStatus.DRAFT: {CampaignStatus.SCHEDULED, CampaignStatus.CANCELLED},
    CampaignStatus.SCHEDULED: {
        CampaignStatus.SENDING,
        CampaignStatus.CANCELLED,
        CampaignStatus.DRAFT,
    },
    CampaignStatus.SENDING: {
        CampaignStatus.SENT,
        CampaignStatus.CANCELLED,
        CampaignStatus.FAILED,
        CampaignStatus.PAUSED,
    },
    # A canary's waves held, by hand or by its judge (campaigns.canary).
    CampaignStatus.PAUSED: {CampaignStatus.SENDING, CampaignStatus.CANCELLED},
    # Withdrawing a sent campaign cancels what offline devices have not
    # received yet.
    CampaignStatus.SENT: {CampaignStatus.CANCELLED},
}
CAMPAIGN_UPDATABLE = [
    "name",
    "title",
    "body",
    "url",
    "image",
    "data",
    "audience_kind",
    "audience",
    "send_at",
    "local_time",
    "ttl_seconds",
    "priority",
    "collapse_key",
    "wake_mode",
    "throttle_per_second",
    *pacing.PACING_FIELDS,
    "split_percent",
    "test_percent",
    "winner_metric",
    "winner_window_seconds",
    *canary.CANARY_FIELDS,
]


# Where the wall-clock time of a local-time campaign comes first and last:
# UTC+14 (Kiribati) and UTC-12.
EARLIEST_OFFSET = timedelta(hours=14)
LATEST_OFFSET = timedelta(hours=12)
# A send time this close to now still counts as now (a form filled slowly).
PAST_TOLERANCE = timedelta(seconds=60)
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)


class CampaignStateError(ValidationError):
    """The campaign is not in a state that allows this change."""


def audience_is_everyone(kind: str, spec: dict[str, Any]) -> bool:
    """True when the audience is every device of the app."""
    return kind == AudienceKind.ALL


def audience_check(kind: str, spec: dict[str, Any]) -> None:
    """Refuse an audience whose kind and conditions contradict each other.

    Conditions under "all devices" were silently ignored, and "matching a
    filter" without any condition silently meant everyone.
    """
    if kind == AudienceKind.ALL and spec:
        raise ValidationError(
            {
                "audience_kind": [
                    "Conditions are filled in but the audience is every "
                    "device: choose “Devices matching a filter”, or clear them."
                ]
            }
        )
    if kind == AudienceKind.FILTER and not spec:
        raise ValidationError(
            {
                "audience_kind": [
                    "A filter needs at least one condition; to reach every "
                    "device choose “All devices of the app”."
                ]
            }
        )


def send_at_check(
    when: datetime | None, *, local_time: bool, now: datetime | None = None
) -> None:
    """Refuse a send time already past (everywhere, for local time)."""
    if when is None:
        return
    now = now or timezone.now()
    if local_time:
        # The wall-clock time is stored as UTC; it comes last at UTC-12.
        if when + LATEST_OFFSET < now - PAST_TOLERANCE:
            raise ValidationError(
                {"send_at": ["That time is already past in every time zone."]}
            )
    elif when < now - PAST_TOLERANCE:
        raise ValidationError({"send_at": ["That time is in the past."]})


def campaign_validate(
    campaign: Campaign,
    *,
    variants: list[dict[str, Any]] | None = None,
    languages: list[dict[str, Any]] | None = None,
) -> None:
    """Content, audience, options and A/B variants (the stored ones unless
    given), with a message per field."""
    errors: dict[str, list[str]] = {}
    try:
        variant_rules.variants_validate(
            campaign,
            variant_rules.stored_variants(campaign) if variants is None else variants,
            (
                variant_rules.stored_languages(campaign)
                if languages is None
                else languages
            ),
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if not campaign.name.strip():
        errors["name"] = ["A name is required."]
    try:
        campaign.audience = audience_validate(campaign.audience_kind, campaign.audience)
        audience_check(campaign.audience_kind, campaign.audience)
        segments.campaign_segment_check(campaign)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        messages.message_validate(_message_for(campaign, timezone.now()))
        personalize.content_validate(personalize.content_of(campaign))
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if campaign.throttle_per_second == 0:
        errors["throttle_per_second"] = ["Leave empty for no throttle, or above 0."]
    errors.update(pacing.pacing_validate(campaign))
    errors.update(canary.waves_validate(campaign))
    if errors:
        raise ValidationError(errors)


def campaign_create(
    *,
    created_by: Any = None,
    variants: list[dict[str, Any]] | None = None,
    languages: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Campaign:
    """A draft; `variants` (B-E) and `languages` as campaigns.variants says."""
    campaign = Campaign(created_by=created_by, **fields)
    campaign_validate(campaign, variants=variants or [], languages=languages or [])
    send_at_check(campaign.send_at, local_time=campaign.local_time)
    with transaction.atomic():
        campaign.save()
        variant_rules.variants_write(campaign, variants or [], languages or [])
    return campaign


def campaign_update(
    *,
    campaign: Campaign,
    now: datetime | None = None,
    variants: list[dict[str, Any]] | None = None,
    languages: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Campaign:
    """Edit a draft or a scheduled campaign (whose slices are made again).

    `variants` and `languages`, when given, replace the stored ones."""
    now = now or timezone.now()
    unknown = set(fields) - set(CAMPAIGN_UPDATABLE)
    if unknown:
        raise ValidationError({name: ["Cannot be changed."] for name in unknown})
    with transaction.atomic():
        locked = (
            Campaign.objects.select_for_update()
            .select_related("app")
            .get(pk=campaign.pk)
        )
        if locked.status not in EDITABLE:
            raise CampaignStateError(
                {"status": [f"A {locked.status} campaign cannot be edited."]}
            )
        for name, value in fields.items():
            setattr(locked, name, value)
        campaign_validate(locked, variants=variants, languages=languages)
        if {"send_at", "local_time"} & set(fields):
            send_at_check(locked.send_at, local_time=locked.local_time, now=now)
        if locked.status == CampaignStatus.SCHEDULED and locked.send_at is None:
            raise ValidationError(
                {"send_at": ["A scheduled campaign needs a send time."]}
            )
        locked.save()
        if variants is not None or languages is not None:
            variant_rules.variants_write(
                locked,
                variant_rules.stored_variants(locked) if variants is None else variants,
                (
                    variant_rules.stored_languages(locked)
                    if languages is None
                    else languages
                ),
            )
        if locked.status == CampaignStatus.SCHEDULED:
            locked.slices.all().delete()
            _slices_create(locked, locked.send_at, now)
    return locked


def campaign_schedule(
    *,
    campaign: Campaign,
    by: Any = None,
    send_at: datetime | None = None,
    now: datetime | None = None,
) -> Campaign:
    """Schedule a draft for send_at (default: its own send_at)."""
    now = now or timezone.now()
    when = send_at or campaign.send_at
    if when is None:
        raise ValidationError({"send_at": ["Choose when to send."]})
    send_at_check(when, local_time=campaign.local_time, now=now)
    return _schedule(campaign, by, when, now)


def campaign_schedule_now(
    *, campaign: Campaign, by: Any = None, now: datetime | None = None
) -> Campaign:
    """Schedule for now: the scheduler (or sender.campaign_send_now) sends.

    A draft, or a scheduled campaign brought forward to now.
    """
    now = now or timezone.now()
    return _schedule(campaign, by, now, now, local_time=False, reschedule=True)


def campaign_cancel(
    *,
    campaign: Campaign,
    by: Any = None,
    now: datetime | None = None,
    withdraw: bool = True,
) -> Campaign:
    """Stop a campaign: nothing not yet written to a socket is delivered.

    withdraw=False stops the sending only: a recall that follows in the same
    transaction (campaigns.recall) must still see the deliveries written and
    not yet acknowledged, to tell those devices; it cancels them itself.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = _transition(campaign, CampaignStatus.CANCELLED, finished_at=now)
        locked.slices.update(done=True)
        for message_id in campaign_message_ids(locked) if withdraw else []:
            receipts.deliveries_cancel(message_id=message_id)
    return locked


def campaign_unschedule(*, campaign: Campaign, by: Any = None) -> Campaign:
    """Back to a draft: nothing is sent until it is scheduled again."""
    with transaction.atomic():
        locked = _transition(campaign, CampaignStatus.DRAFT, sent_by=None)
        locked.slices.all().delete()
    return locked


def campaign_duplicate(*, campaign: Campaign, by: Any = None) -> Campaign:
    copy = Campaign(
        **{name: getattr(campaign, name) for name in CAMPAIGN_UPDATABLE},
        app=campaign.app,
        created_by=by,
    )
    copy.name = f"{campaign.name} (copy)"[:200]
    copy.segment_id = campaign.segment_id
    with transaction.atomic():
        copy.save()
        variant_rules.variants_copy(campaign, copy)
    return copy


def campaign_send_test(
    *, campaign: Campaign, device_ids: Iterable[Any]
) -> tuple[Message, int]:
    """Send the campaign's content to chosen devices, rendered for each as
    the campaign will render it (placeholders filled); devices with the same
    rendered content share a message. Not counted in its stats. Returns the
    first message and how many devices were sent one."""
    ids = list(device_ids)
    groups: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    own = personalize.content_of(campaign)
    for device in Device.objects.filter(app_id=campaign.app_id, pk__in=ids):
        fields = personalize.render(own, device)
        key = json.dumps(fields, sort_keys=True, default=str)
        groups.setdefault(key, (fields, []))[1].append(device.pk)
    first, sent = None, 0
    for fields, group in groups.values() or [(own, ids)]:
        message, count = pushes.push_to_devices(
            app=campaign.app,
            device_ids=group,
            title=f"[Test] {fields['title']}"[:200],
            body=fields["body"],
            url=fields["url"],
            image=fields["image"],
            data=fields["data"],
            priority=campaign.priority,
            ttl_seconds=min(campaign.ttl_seconds, 86400),
        )
        first, sent = first or message, sent + count
    assert first is not None
    return first, sent


def campaign_start(*, campaign_id: int, now: datetime) -> Campaign:
    """scheduled -> sending, creating its message (variant A's own content,
    Campaign.message). Caller holds a transaction. Chunks add one message
    per other variant, language or personalised content (campaigns.content)."""
    campaign = _transition(
        Campaign(pk=campaign_id), CampaignStatus.SENDING, started_at=now
    )
    ttl_end = max(s.expires_at for s in campaign.slices.all())
    content.base_message(campaign, expires_at=ttl_end, now=now)
    campaign.refresh_from_db(fields=["message"])
    return campaign


def campaign_finish(*, campaign: Campaign, now: datetime) -> Campaign:
    return _transition(campaign, CampaignStatus.SENT, finished_at=now)


def campaign_fail(*, campaign: Campaign, reason: str, now: datetime) -> Campaign:
    with transaction.atomic():
        failed = _transition(
            campaign, CampaignStatus.FAILED, finished_at=now, failure_reason=reason
        )
        failed.slices.update(done=True)
    return failed


def slices_add_missing(*, campaign: Campaign, now: datetime) -> int:
    """Create slices for time zones of the audience that have none yet.

    A local-time campaign is due at its wall-clock time in each zone; one
    with quiet hours at its send time, each zone judged on its own clock
    (campaigns.pacing).
    """
    if not campaign.local_time and not pacing.splits_by_zone(campaign):
        return 0
    assert campaign.send_at is not None
    zones = audience_zones(campaign.app, campaign.audience_kind, campaign.audience)
    existing = set(campaign.slices.values_list("timezone", flat=True))
    wall = timezone.make_naive(campaign.send_at, zoneinfo.ZoneInfo("UTC"))
    new = []
    for zone in sorted(zones - existing):
        due = campaign.send_at
        if campaign.local_time:
            due = wall.replace(tzinfo=zoneinfo.ZoneInfo(zone))
        new.append(_slice(campaign, zone, max(due, now)))
    CampaignSlice.objects.bulk_create(new)
    return len(new)


def audience_zones(app: Any, kind: str, spec: dict[str, Any]) -> set[str]:
    """The time zones of an audience's devices (unset: the app's default)."""
    default = app.default_timezone
    zones = set(
        audience_devices(app, kind, spec)
        .annotate(zone=Coalesce(NullIf("timezone", Value("")), Value(default)))
        .values_list("zone", flat=True)
        .distinct()
    )
    zones.add(default)
    return zones


def _schedule(
    campaign: Campaign,
    by: Any,
    when: datetime,
    now: datetime,
    local_time: bool | None = None,
    reschedule: bool = False,
) -> Campaign:
    with transaction.atomic():
        locked = (
            Campaign.objects.select_for_update()
            .select_related("app")
            .get(pk=campaign.pk)
        )
        if (
            reschedule
            and locked.status == CampaignStatus.SCHEDULED
            # Due by the clock read under the lock: a click whose `now` was
            # read before a concurrent click's commit still sees that send.
            and not locked.slices.filter(due_at__lte=max(now, timezone.now())).exists()
        ):
            # Brought forward: its slices (and its send time) are replaced.
            # One already due is being sent (a second click of Send now):
            # that is refused below, so a double click still sends once.
            locked.slices.all().delete()
            locked.sent_by = by
        else:
            locked = _transition(locked, CampaignStatus.SCHEDULED, sent_by=by)
        if local_time is not None:
            locked.local_time = local_time
        locked.send_at = when
        campaign_validate(locked)
        locked.save()
        _slices_create(locked, when, now)
    return locked


def _slices_create(campaign: Campaign, when: datetime, now: datetime) -> None:
    if campaign.local_time or pacing.splits_by_zone(campaign):
        slices_add_missing(campaign=campaign, now=now)
    else:
        _slice(campaign, "", when).save()


def _slice(campaign: Campaign, zone: str, due: datetime) -> CampaignSlice:
    # Quiet hours in the zone at that time (defer mode): due at their end.
    paced = pacing.slice_due(campaign, zone, due)
    return CampaignSlice(
        campaign=campaign,
        timezone=zone,
        due_at=paced,
        next_chunk_at=paced,
        expires_at=paced + timedelta(seconds=campaign.ttl_seconds),
        deferred_until=paced if paced > due else None,
    )


def campaign_transition(*, campaign: Campaign, to: str, **fields: Any) -> Campaign:
    """A state change for other services (campaigns.canary's pause)."""
    return _transition(campaign, to, **fields)


def _transition(campaign: Campaign, to: str, **fields: Any) -> Campaign:
    with transaction.atomic():
        locked = (
            Campaign.objects.select_for_update()
            .select_related("app")
            .get(pk=campaign.pk)
        )
        if to not in TRANSITIONS.get(locked.status, set()):
            raise CampaignStateError(
                {"status": [f"A {locked.status} campaign cannot become {to}."]}
            )
        was = locked.status
        locked.status = to
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save()
        # Withdrawing a sent campaign does not finish it a second time.
        if to in FINISHED and was != CampaignStatus.SENT:
            webhooks.event_emit(
                app_id=locked.app_id,
                event=WebhookEvent.CAMPAIGN_FINISHED,
                data=lambda: _finished_event(locked),
            )
    return locked


FINISHED = (CampaignStatus.SENT, CampaignStatus.CANCELLED, CampaignStatus.FAILED)


def _finished_event(campaign: Campaign) -> dict[str, Any]:
    return {
        "campaign_id": campaign.pk,
        "name": campaign.name,
        "status": campaign.status,
        "message_id": str(campaign.message_id) if campaign.message_id else None,
        "started_at": campaign.started_at.isoformat() if campaign.started_at else None,
        "finished_at": (
            campaign.finished_at.isoformat() if campaign.finished_at else None
        ),
        "stats": campaign_delivery_stats(campaign),
    }


def _message_for(campaign: Campaign, now: datetime) -> Message:
    return Message(
        app_id=campaign.app_id,
        title=campaign.title,
        body=campaign.body,
        url=campaign.url,
        image=campaign.image,
        data=campaign.data,
        priority=campaign.priority,
        collapse_key=campaign.collapse_key,
        wake_mode=campaign.wake_mode,
        created_at=now,
        expires_at=now + timedelta(seconds=campaign.ttl_seconds),
    )


__all__ = ["DeliveryStatus"]
