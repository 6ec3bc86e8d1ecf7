"""App versions compared as versions, not as text: 1.10 comes after 1.9.

A version is up to six dot-separated numbers, optionally led by "v" and
followed by a suffix. A suffix starting with "-" or a letter marks a
pre-release, which comes before its release (2.0.0-beta < 2.0.0); one
starting with "+" is build metadata and changes nothing. Missing numbers
are zeros (1.2 == 1.2.0).

``version_key`` turns a version into text whose plain ordering is the
version ordering, so the database compares versions with an index-friendly
string comparison (Device.app_version_key, written with app_version).
"""

import re

PARTS = 6
DIGITS = 9
VERSION = re.compile(r"^[vV]?(\d{1,9}(?:\.\d{1,9}){0,5})([-+A-Za-z].*)?$")
# After the numbers: a release sorts after its pre-releases.
RELEASE, PRE_RELEASE = "~", "-"


def version_parts(text: str) -> tuple[tuple[int, ...], bool] | None:
    """The numbers (six, zero-padded) and whether it is a release, or None."""
    match = VERSION.match(text.strip())
    if match is None:
        return None
    numbers = [int(part) for part in match.group(1).split(".")]
    suffix = match.group(2) or ""
    release = not suffix or suffix.startswith("+")
    return tuple(numbers + [0] * (PARTS - len(numbers))), release


def version_key(text: str) -> str:
    """Sortable text for a version; "" for text that is not a version."""
    parts = version_parts(text)
    if parts is None:
        return ""
    numbers, release = parts
    digits = ".".join(f"{number:0{DIGITS}d}" for number in numbers)
    return digits + (RELEASE if release else PRE_RELEASE)


def is_version(text: str) -> bool:
    return version_parts(text) is not None
