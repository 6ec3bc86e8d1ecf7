"""Quiet hours: a wall-clock window in a device's own time zone.

22:00-08:00 runs over midnight: 23:30 and 07:59 are inside, 08:00 is not
(the end is exclusive). A window is judged on the device's local wall
clock, so it follows daylight saving time: on a change day 22:00-08:00 is
nine or eleven hours long. An end that does not exist that day (a wall time
in a spring-forward gap, 02:30 in New York) ends the window as the clock
would read it without the jump: 02:30 EST, which is 03:30 EDT.
"""

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from devices.delivery.caps import cap_errors

UTC = zoneinfo.ZoneInfo("UTC")


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours need a start and an end that differ")

    @property
    def over_midnight(self) -> bool:
        return self.start > self.end

    def contains(self, when: datetime, zone: zoneinfo.ZoneInfo) -> bool:
        """Is the wall clock in `zone` inside the window at `when`?"""
        wall = when.astimezone(zone).time().replace(tzinfo=None)
        if self.over_midnight:
            return wall >= self.start or wall < self.end
        return self.start <= wall < self.end

    def end_after(self, when: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
        """When the window that holds `when` ends in `zone` (UTC); `when`
        itself if it is outside the window."""
        if not self.contains(when, zone):
            return when
        local = when.astimezone(zone)
        day = local.date()
        if self.over_midnight and local.time().replace(tzinfo=None) >= self.start:
            day += timedelta(days=1)
        end = datetime.combine(day, self.end, tzinfo=zone)
        # A wall time in a spring-forward gap (fold=0) takes the offset
        # before the change, an instant after the gap.
        return max(end.astimezone(UTC), when.astimezone(UTC))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def quiet_hours_or_none(start: time | None, end: time | None) -> QuietHours | None:
    if start is None or end is None or start == end:
        return None
    return QuietHours(start, end)


def quiet_hours_check(
    start: time | None, end: time | None, *, required: bool, prefix: str = ""
) -> None:
    """Both times or neither (both when required), and not equal."""
    if start is None and end is None and not required:
        return
    if start is None or end is None:
        missing = f"{prefix}quiet_hours_start" if start is None else ""
        missing = missing or f"{prefix}quiet_hours_end"
        raise ValidationError({missing: ["Give both the start and the end."]})
    if start == end:
        raise ValidationError(
            {f"{prefix}quiet_hours_end": ["The end must differ from the start."]}
        )


def quiet_hours_example(
    window: QuietHours, *, viewer: zoneinfo.ZoneInfo, zone: str = "Asia/Tokyo"
) -> str:
    """'22:00-08:00 in each device's zone: a device in Tokyo gets a deferred
    push at 08:00 JST = 00:00 in your zone (Europe/Paris).'"""
    place = zoneinfo.ZoneInfo(zone)
    today = timezone.now().astimezone(place).date()
    end = datetime.combine(today, window.end, tzinfo=place)
    city = zone.rsplit("/", 1)[-1].replace("_", " ")
    mine = end.astimezone(viewer)
    return (
        f"{window} in each device's own time zone: a device in {city} gets a "
        f"deferred push at {end:%H:%M} {end.tzname()} = {mine:%H:%M} in your "
        f"zone ({viewer.key})."
    )


def app_pacing_check(app: Any) -> None:
    """An app's frequency cap and quiet hours, an error list per field."""
    errors: dict[str, list[str]] = {
        f"frequency_cap_{key}": [message]
        for key, message in cap_errors(
            app.frequency_cap_count, app.frequency_cap_window_seconds
        ).items()
    }
    try:
        quiet_hours_check(app.quiet_hours_start, app.quiet_hours_end, required=False)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
