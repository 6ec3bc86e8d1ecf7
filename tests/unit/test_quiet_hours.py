"""Quiet-hours windows on a device's wall clock (campaigns.quiethours)."""

import zoneinfo
from datetime import UTC, datetime, time

import pytest

from devices.delivery.quiethours import QuietHours

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
NIGHT = QuietHours(time(22, 0), time(8, 0))


@pytest.mark.parametrize(
    ("wall", "inside"),
    [
        (time(21, 59), False),
        (time(22, 0), True),
        (time(23, 30), True),
        (time(0, 0), True),
        (time(7, 59), True),
        (time(8, 0), False),
        (time(12, 0), False),
    ],
)
def test_a_window_over_midnight_holds_both_sides_of_it(wall, inside):
    when = datetime(2026, 6, 1, wall.hour, wall.minute, tzinfo=PARIS)
    assert NIGHT.contains(when, PARIS) is inside


def test_a_daytime_window_holds_only_its_own_hours():
    lunch = QuietHours(time(12, 0), time(14, 0))
    day = datetime(2026, 6, 1, tzinfo=PARIS)
    assert lunch.contains(day.replace(hour=13), PARIS)
    assert not lunch.contains(day.replace(hour=14), PARIS)
    assert not lunch.contains(day.replace(hour=11, minute=59), PARIS)
    end = lunch.end_after(day.replace(hour=12, minute=30), PARIS)
    assert end == datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # 14:00 CEST


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another():
    # 14:00 UTC: 16:00 in Paris, 23:00 in Tokyo.
    when = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    assert not NIGHT.contains(when, PARIS)
    assert NIGHT.contains(when, TOKYO)


def test_the_window_ends_the_next_morning_when_entered_before_midnight():
    when = datetime(2026, 6, 1, 23, 30, tzinfo=TOKYO)
    assert NIGHT.end_after(when, TOKYO) == datetime(2026, 6, 2, 8, 0, tzinfo=TOKYO)


def test_the_window_ends_the_same_morning_when_entered_after_midnight():
    when = datetime(2026, 6, 2, 3, 0, tzinfo=TOKYO)
    assert NIGHT.end_after(when, TOKYO) == datetime(2026, 6, 2, 8, 0, tzinfo=TOKYO)


def test_outside_the_window_the_end_is_now():
    when = datetime(2026, 6, 2, 9, 0, tzinfo=TOKYO)
    assert NIGHT.end_after(when, TOKYO) == when


def test_a_night_with_a_spring_forward_is_an_hour_shorter():
    # New York, 8 March 2026: 02:00 EST jumps to 03:00 EDT.
    evening = datetime(2026, 3, 7, 22, 0, tzinfo=NEW_YORK)
    end = NIGHT.end_after(evening, NEW_YORK)
    assert end == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)  # 08:00 EDT
    assert (end - evening).total_seconds() == 9 * 3600


def test_a_night_with_a_fall_back_is_an_hour_longer():
    # New York, 1 November 2026: 02:00 EDT falls back to 01:00 EST.
    evening = datetime(2026, 10, 31, 22, 0, tzinfo=NEW_YORK)
    end = NIGHT.end_after(evening, NEW_YORK)
    assert end == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert (end - evening).total_seconds() == 11 * 3600


def test_an_end_inside_the_spring_forward_gap_is_after_the_gap():
    small_hours = QuietHours(time(1, 0), time(2, 30))
    when = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert small_hours.contains(when, NEW_YORK)
    end = small_hours.end_after(when, NEW_YORK)
    assert end == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT
    assert not small_hours.contains(end, NEW_YORK)


def test_a_window_must_have_a_length():
    with pytest.raises(ValueError, match="differ"):
        QuietHours(time(8, 0), time(8, 0))
