"""Read-side helpers of the marketer's console (the campaign admin): the live
audience estimate, the local-time schedule explained, the list's figures.

Rules stay in campaigns.lifecycle (the audience checks) and the audience
module; this only reads.
"""

import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, FloatField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Campaign
from devices.models import App, MessageCount
from devices.registry.audience import audience_estimate, audience_validate

UTC = zoneinfo.ZoneInfo("UTC")


def console_estimate(app: App, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Matching and online-now counts of an audience being composed, or the
    reason it would be refused (the lifecycle's own checks)."""
    try:
        clean = audience_validate(kind, spec)
        lifecycle.audience_check(kind, clean)
        counts = audience_estimate(app, kind, clean)  # reads its segment
    except ValidationError as exc:
        return {"error": " ".join(exc.messages)}
    everyone = lifecycle.audience_is_everyone(kind, clean)
    return {**counts, "everyone": everyone}


@dataclass(frozen=True)
class ZoneTime:
    zone: str
    at: datetime  # the absolute instant the wall-clock time comes there


def local_schedule(
    app: App, kind: str, spec: dict[str, Any], wall: datetime
) -> list[ZoneTime]:
    """When a local-time send comes in each zone of the audience, first first.

    `wall` is the naive wall-clock time (09:00 means 09:00 in each zone).
    """
    zones = lifecycle.audience_zones(app, kind, spec)
    times = [ZoneTime(z, wall.replace(tzinfo=zoneinfo.ZoneInfo(z))) for z in zones]
    return sorted(times, key=lambda item: (item.at, item.zone))


def local_schedule_note(times: list[ZoneTime], wall: datetime) -> str:
    """'09:00 in each device's zone: Asia/Tokyo first, at 01:00 your time
    (Europe/Paris), America/New_York last, at 15:00 your time.'"""
    if not times:
        return ""
    here = timezone.get_current_timezone()

    def yours(item: ZoneTime) -> str:
        local = timezone.localtime(item.at, here)
        day = "" if local.date() == wall.date() else local.strftime(" on %a %d %b")
        return f"{local:%H:%M}{day}"

    first, last = times[0], times[-1]
    note = f"{wall:%H:%M} in each device's zone: {first.zone} first, at "
    note += f"{yours(first)} your time ({here})"
    if last.zone != first.zone:
        note += f", {last.zone} last, at {yours(last)}"
    return note + f" ({len(times)} zone{'s' if len(times) != 1 else ''})."


def _count(column: str) -> Coalesce:
    link = "message__campaign_link__campaign_id"
    shards = (
        MessageCount.objects.filter(**{link: OuterRef("pk")})
        .values(link)
        .annotate(total=Sum(column))
        .values("total")
    )
    return Coalesce(Subquery(shards), 0)


def campaigns_with_figures(queryset: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """The list's sortable figures: sent to, delivered %, opened %.

    Summed from the counters (devices.delivery.counters) of the campaign's
    messages (one per wave, variant and language, campaigns.content), one
    subquery per column over at most 9 rows per message.
    """
    return queryset.annotate(
        n_targeted=_count("targeted"),
        n_delivered=_count("delivered"),
        n_opened=_count("opened"),
    ).annotate(
        delivered_rate=Cast(F("n_delivered"), FloatField())
        / NullIf(Cast(F("n_targeted"), FloatField()), 0.0),
        opened_rate=Cast(F("n_opened"), FloatField())
        / NullIf(Cast(F("n_delivered"), FloatField()), 0.0),
    )
