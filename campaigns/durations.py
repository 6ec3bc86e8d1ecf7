"""Durations in human units: "7d", "12h", "30m", "1d 12h", "90s" or "3600".

The campaign form shows and takes TTLs this way (the model keeps seconds).
"""

import re

from django.core.exceptions import ValidationError

UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
NAMES = {"w": "week", "d": "day", "h": "hour", "m": "minute", "s": "second"}
_PART = re.compile(r"(\d+)\s*([wdhms])")


def duration_parse(text: str) -> int:
    """Seconds in `text`; a bare number is seconds."""
    cleaned = text.strip().lower().replace(",", " ")
    if cleaned.isdigit():
        return int(cleaned)
    parts = _PART.findall(cleaned)
    if not parts or _PART.sub("", cleaned).strip():
        raise ValidationError(
            "Write a duration such as 7d, 12h, 30m or 1d 12h (w d h m s)."
        )
    return sum(int(number) * UNITS[unit] for number, unit in parts)


def duration_format(seconds: int) -> str:
    """The shortest exact form: 604800 -> "7d", 5400 -> "1h 30m"."""
    if not seconds:
        return "0s"
    parts = []
    for unit in "dhms":
        count, seconds = divmod(seconds, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def duration_words(seconds: int) -> str:
    """604800 -> "7 days", 5400 -> "1 hour 30 minutes"."""
    if not seconds:
        return "0 seconds"
    words = []
    for unit in "dhms":
        count, seconds = divmod(seconds, UNITS[unit])
        if count:
            words.append(f"{count} {NAMES[unit]}{'s' if count != 1 else ''}")
    return " ".join(words)
