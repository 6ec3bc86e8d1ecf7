"""Saved segments: audiences with a name, reused by campaigns and pushes.

A campaign refers to a segment (audience["segment"]) and reads it when it
sends, so editing a segment changes what its drafts and scheduled campaigns
will reach. Two rules keep that safe (docs/api.md, "Segments"):

- a segment cannot be edited while a campaign using it is sending (its
  audience would change between chunks);
- a segment cannot be deleted while a draft, scheduled or sending campaign
  uses it. Finished campaigns keep their record; their link is cleared.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from campaigns.models import Campaign, CampaignStatus
from devices.models import App, Segment
from devices.registry.audience.grammar import invalid, spec_validate

UNFINISHED = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.SENDING)
SEGMENT_UPDATABLE = ("name", "description", "spec")


class SegmentInUse(ValidationError):
    """Campaigns that still need the segment as it is."""


def segment_spec_validate(spec: Any) -> dict[str, Any]:
    clean = spec_validate(spec, allow_segment=False)
    if not clean:
        raise invalid("", "A segment needs at least one condition.")
    return clean


def segment_create(
    *,
    app: App,
    name: str,
    spec: Any,
    description: str = "",
    created_by: Any = None,
) -> Segment:
    segment = Segment(app=app, created_by=created_by)
    return _save(segment, name=name, spec=spec, description=description)


def segment_update(*, segment: Segment, **fields: Any) -> Segment:
    unknown = set(fields) - set(SEGMENT_UPDATABLE)
    if unknown:
        raise ValidationError({name: ["Cannot be changed."] for name in unknown})
    with transaction.atomic():
        locked = Segment.objects.select_for_update().get(pk=segment.pk)
        if "spec" in fields and fields["spec"] != locked.spec:
            segment_edit_check(locked)
        return _save(locked, **fields)


def segment_edit_check(segment: Segment) -> None:
    """Refuse a new audience while a campaign using it is sending."""
    sending = _users(segment).filter(status=CampaignStatus.SENDING)
    if sending.exists():
        message = f"{_names(sending)} is sending to it: edit it once done."
        raise SegmentInUse({"audience": [message]})


def segment_delete(*, segment: Segment) -> None:
    with transaction.atomic():
        locked = Segment.objects.select_for_update().get(pk=segment.pk)
        waiting = _users(locked).filter(status__in=UNFINISHED)
        if waiting.exists():
            raise SegmentInUse(
                {
                    "segment": [
                        f"Used by {_names(waiting)}, not sent yet: change "
                        "their audience (or cancel them) first."
                    ]
                }
            )
        _users(locked).update(segment=None)
        locked.delete()


def campaign_segment_check(campaign: Campaign) -> None:
    """Keep campaign.segment in step with audience["segment"], which must
    be a segment of the campaign's app."""
    segment_id = (campaign.audience or {}).get("segment")
    if (
        segment_id is not None
        and not Segment.objects.filter(app_id=campaign.app_id, pk=segment_id).exists()
    ):
        raise invalid("segment", f"No segment {segment_id} in this app.")
    campaign.segment_id = segment_id


def segment_campaigns(segment: Segment) -> QuerySet[Campaign]:
    """The campaigns that use it and have not finished, soonest first."""
    return _users(segment).filter(status__in=UNFINISHED).order_by("send_at", "pk")


def _users(segment: Segment) -> QuerySet[Campaign]:
    return Campaign.objects.filter(segment=segment)


def _names(campaigns: QuerySet[Campaign]) -> str:
    names = [f"“{c.name}” ({c.status})" for c in campaigns[:3]]
    more = campaigns.count() - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _save(segment: Segment, **fields: Any) -> Segment:
    errors: dict[str, list[str]] = {}
    for name, value in fields.items():
        setattr(segment, name, value)
    segment.name = (segment.name or "").strip()
    if not segment.name:
        errors["name"] = ["A name is required."]
    try:
        segment.spec = segment_spec_validate(segment.spec)
    except ValidationError as exc:
        errors["audience"] = exc.message_dict["audience"]
    if segment.name and (
        Segment.objects.filter(app_id=segment.app_id, name=segment.name)
        .exclude(pk=segment.pk)
        .exists()
    ):
        errors["name"] = [f"This app already has a segment named “{segment.name}”."]
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            segment.save()
    except IntegrityError as exc:  # the same name saved at the same moment
        raise ValidationError(
            {"name": [f"This app already has a segment named “{segment.name}”."]}
        ) from exc
    return segment
