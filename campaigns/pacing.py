"""Pacing a campaign: frequency caps and quiet hours (docs/console.md).

Both are the app's unless the campaign overrides them, and both act where a
campaign is sent, chunk by chunk (campaigns.sender):

* Frequency cap: before a chunk is written, the devices that already had
  the cap's number of counted pushes in its window are left out and recorded
  as capped (CampaignExclusion); the chunk's deliveries then count toward
  the cap (devices.delivery.caps). A capped device is not met again by the
  campaign: neither sent later nor counted twice.
* Quiet hours: a campaign with quiet hours is sliced per time zone (as a
  local-time campaign is). A zone's slice that comes due inside the window
  in its zone waits until the window ends there (defer: its devices count
  as deferred when they are sent) or records its devices as skipped
  (skip). The check is made when the slice is created, so the page can show
  when each zone will be sent, and again at every chunk, so a throttled
  campaign that runs into the night waits too.
"""

import zoneinfo
from collections.abc import Iterator, Sequence
from datetime import datetime, time, timedelta
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Sum
from django.utils import timezone

from campaigns.durations import duration_words
from campaigns.models import (
    Campaign,
    CampaignExclusion,
    CampaignMessage,
    CampaignSlice,
    ExclusionReason,
    FrequencyCapMode,
    QuietHoursAction,
    QuietHoursMode,
)
from devices.delivery import caps
from devices.delivery.caps import FrequencyCap
from devices.delivery.enqueue import Target
from devices.delivery.quiethours import (
    QuietHours,
    quiet_hours_check,
    quiet_hours_example,
    quiet_hours_or_none,
)
from devices.delivery.sqlvalues import in_values
from devices.models import App, Delivery, Message

PACING_FIELDS = [
    "frequency_cap_mode",
    "frequency_cap_count",
    "frequency_cap_window_seconds",
    "quiet_hours_mode",
    "quiet_hours_start",
    "quiet_hours_end",
    "quiet_hours_action",
]


# Policy -----------------------------------------------------------------


def campaign_cap(campaign: Campaign) -> FrequencyCap | None:
    """The cap this campaign is sent under, or None (not capped or counted)."""
    if campaign.frequency_cap_mode == FrequencyCapMode.EXEMPT:
        return None
    if campaign.frequency_cap_mode == FrequencyCapMode.CUSTOM:
        assert campaign.frequency_cap_count and campaign.frequency_cap_window_seconds
        return FrequencyCap(
            campaign.frequency_cap_count,
            timedelta(seconds=campaign.frequency_cap_window_seconds),
        )
    return caps.app_cap(campaign.app)


def app_quiet_hours(app: App) -> QuietHours | None:
    return quiet_hours_or_none(app.quiet_hours_start, app.quiet_hours_end)


def campaign_quiet_hours(campaign: Campaign) -> QuietHours | None:
    """The device-local window this campaign keeps out of, or None."""
    if campaign.quiet_hours_mode == QuietHoursMode.OFF:
        return None
    if campaign.quiet_hours_mode == QuietHoursMode.CUSTOM:
        return quiet_hours_or_none(campaign.quiet_hours_start, campaign.quiet_hours_end)
    return app_quiet_hours(campaign.app)


def paced(campaign: Campaign) -> bool:
    """Does pacing act on this campaign at all?"""
    return campaign_cap(campaign) is not None or splits_by_zone(campaign)


def splits_by_zone(campaign: Campaign) -> bool:
    """Quiet hours are judged per zone: the campaign gets a slice per zone."""
    return campaign_quiet_hours(campaign) is not None


def pacing_validate(campaign: Campaign) -> dict[str, list[str]]:
    """The campaign's pacing fields, an error list per field."""
    errors: dict[str, list[str]] = {}
    if campaign.frequency_cap_mode == FrequencyCapMode.CUSTOM:
        count = campaign.frequency_cap_count
        window = campaign.frequency_cap_window_seconds
        if count is None:
            errors["frequency_cap_count"] = ["How many pushes at most?"]
        if window is None:
            errors["frequency_cap_window_seconds"] = ["In how long a window?"]
        for key, message in caps.cap_errors(count, window).items():
            errors[f"frequency_cap_{key}"] = [message]
    if campaign.quiet_hours_mode == QuietHoursMode.CUSTOM:
        try:
            quiet_hours_check(
                campaign.quiet_hours_start, campaign.quiet_hours_end, required=True
            )
        except ValidationError as exc:
            errors.update(exc.message_dict)
    return errors


# Slices -----------------------------------------------------------------


def slice_due(campaign: Campaign, zone: str, due: datetime) -> datetime:
    """When a zone's slice should start: `due`, or the end of the quiet
    window `due` falls in (defer mode)."""
    window = campaign_quiet_hours(campaign)
    if window is None or not zone:
        return due
    if campaign.quiet_hours_action != QuietHoursAction.DEFER:
        return due
    return window.end_after(due, zoneinfo.ZoneInfo(zone))


def slice_held(campaign: Campaign, slice_: CampaignSlice, now: datetime) -> bool:
    """At a chunk: is the slice's zone in quiet hours now? In defer mode it
    is moved to the window's end (saved) and True is returned; in skip mode
    the slice turns to recording its devices as skipped."""
    window = campaign_quiet_hours(campaign)
    if window is None or not slice_.timezone or slice_.skipping:
        return False
    zone = zoneinfo.ZoneInfo(slice_.timezone)
    if not window.contains(now, zone):
        return False
    if campaign.quiet_hours_action == QuietHoursAction.SKIP:
        slice_.skipping = True
        slice_.save(update_fields=["skipping"])
        return False
    until = window.end_after(now, zone)
    slice_.expires_at += until - slice_.next_chunk_at
    slice_.next_chunk_at = slice_.deferred_until = until
    slice_.save(update_fields=["next_chunk_at", "deferred_until", "expires_at"])
    # Deliveries written later must outlive their message by no more than
    # retention expects (devices.delivery.retention).
    Message.objects.filter(
        pk__in=_messages_of(campaign), expires_at__lt=slice_.expires_at
    ).update(expires_at=slice_.expires_at)
    return True


# Chunks -----------------------------------------------------------------


def devices_undecided(campaign: Campaign, devices: QuerySet) -> QuerySet:
    """The audience without the devices this campaign already left out."""
    if not paced(campaign):
        return devices
    return devices.exclude(
        Exists(
            CampaignExclusion.objects.filter(
                campaign=campaign, device_id=OuterRef("pk")
            )
        )
    )


def chunk_sendable(
    *,
    campaign: Campaign,
    slice_: CampaignSlice,
    ids: Sequence[UUID],
    now: datetime,
) -> list[UUID]:
    """The chunk's devices to send to; the others are recorded as capped or
    skipped. Caller holds the chunk's transaction."""
    if not ids or not paced(campaign):
        return list(ids)
    if slice_.skipping:
        have = set(
            Delivery.objects.filter(
                message_id__in=_messages_of(campaign),
                device_id__in=in_values(list(ids), "uuid"),
            ).values_list("device_id", flat=True)
        )
        _exclude(
            campaign, [i for i in ids if i not in have], ExclusionReason.SKIPPED, now
        )
        return []
    cap = campaign_cap(campaign)
    if cap is None:
        return list(ids)
    caps.devices_lock(ids)
    capped = caps.capped_devices(
        ids, cap=cap, now=now, message_ids=_messages_of(campaign)
    )
    _exclude(campaign, sorted(capped), ExclusionReason.CAPPED, now)
    return [i for i in ids if i not in capped]


def chunk_sent(
    *,
    campaign: Campaign,
    slice_: CampaignSlice,
    targets: Sequence[Target],
    now: datetime,
) -> None:
    """Count the chunk's pushes toward the cap; tally deferred ones."""
    if not targets:
        return
    if campaign_cap(campaign) is not None:
        caps.pushes_record([t.device_id for t in targets], now=now)
    if slice_.deferred_until is not None:
        CampaignSlice.objects.filter(pk=slice_.pk).update(
            deferred=F("deferred") + len(targets)
        )


def _messages_of(campaign: Campaign) -> QuerySet:
    """The ids of every message the campaign sent (one per wave, variant,
    language and content: campaigns.content), as a subquery."""
    return CampaignMessage.objects.filter(campaign_id=campaign.pk).values("message_id")


def _exclude(
    campaign: Campaign, device_ids: Sequence[UUID], reason: str, now: datetime
) -> None:
    CampaignExclusion.objects.bulk_create(
        [
            CampaignExclusion(campaign=campaign, device_id=i, reason=reason, at=now)
            for i in device_ids
        ],
        ignore_conflicts=True,
    )


# Stats ------------------------------------------------------------------


def campaign_pacing_stats(campaign: Campaign) -> dict[str, int]:
    """Devices capped, skipped (quiet hours) and deferred then sent; exact:
    each moved in the transaction of the chunk that decided it."""
    counts = dict(
        campaign.exclusions.order_by()
        .values_list("reason")
        .annotate(n=Count("pk"))
        .values_list("reason", "n")
    )
    deferred = campaign.slices.aggregate(n=Sum("deferred"))["n"] or 0
    return {
        "capped": counts.get(ExclusionReason.CAPPED, 0),
        "skipped": counts.get(ExclusionReason.SKIPPED, 0),
        "deferred": deferred,
    }


def exclusion_results(
    campaign: Campaign, columns: Sequence[str]
) -> Iterator[tuple[Any, ...]]:
    """A results row per device left out (status `capped` or `skipped`,
    no seq or times), in the results' columns, streamed."""
    rows = (
        campaign.exclusions.order_by("device_id")
        .values_list("device_id", "device__alias", "device__platform", "reason")
        .iterator(chunk_size=2000)
    )
    for device_id, alias, platform, reason in rows:
        known = {
            "device_id": device_id,
            "alias": alias or "",
            "platform": platform or "",
            "status": reason,
        }
        yield tuple(known.get(column, "") for column in columns)


def zones_waiting(campaign: Campaign, now: datetime | None = None) -> list[Any]:
    """The zones held by quiet hours that are still to be sent, with when."""
    now = now or timezone.now()
    return list(
        campaign.slices.filter(
            done=False, deferred_until__isnull=False, next_chunk_at__gt=now
        )
        .order_by("next_chunk_at", "timezone")
        .values("timezone", "next_chunk_at")
    )


# Words ------------------------------------------------------------------


def cap_words(cap: FrequencyCap | None) -> str:
    if cap is None:
        return "No frequency cap"
    pushes = "push" if cap.limit == 1 else "pushes"
    window = duration_words(int(cap.window.total_seconds()))
    return f"At most {cap.limit} campaign {pushes} per device per {window}"


def quiet_hours_words(campaign: Campaign) -> str:
    """'22:00-08:00 in each device's zone, then sent' (or 'None')."""
    window = campaign_quiet_hours(campaign)
    if window is None:
        return "None: sent at any hour"
    then = (
        "then sent"
        if campaign.quiet_hours_action == QuietHoursAction.DEFER
        else "skipped"
    )
    whose = "The app's: " if campaign.quiet_hours_mode == QuietHoursMode.APP else ""
    return f"{whose}{window} in each device's own time zone; devices in them are {then}"


def campaign_summary(campaign: Campaign) -> str:
    """'This campaign: ...' for settings that are complete, else ''."""
    if pacing_validate(campaign):
        return ""
    cap = _lower_first(cap_words(campaign_cap(campaign)))
    quiet = _lower_first(quiet_hours_words(campaign))
    return f"This campaign: {cap}; quiet hours: {quiet}."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def pacing_note(
    app: App | None, viewer: zoneinfo.ZoneInfo, *, campaign: Campaign | None = None
) -> str:
    """The composer's plain words: the app's cap and quiet hours, and the
    rule with an example in the marketer's zone (the campaign's own window
    when it has one)."""
    window = app_quiet_hours(app) if app is not None else None
    if campaign is not None and campaign.quiet_hours_mode == QuietHoursMode.CUSTOM:
        window = campaign_quiet_hours(campaign) or window
    example = "Quiet hours " + quiet_hours_example(
        window or QuietHours(time(22, 0), time(8, 0)), viewer=viewer
    )
    if app is None:
        return example
    cap = cap_words(caps.app_cap(app))
    quiet = app_quiet_hours(app)
    quiet_text = f"quiet hours {quiet}" if quiet else "no quiet hours"
    return (
        f"The app {app.name}: {cap[0].lower()}{cap[1:]}; {quiet_text}. Keep the "
        f"app's settings, give this campaign its own, or turn them off. {example}"
    )
