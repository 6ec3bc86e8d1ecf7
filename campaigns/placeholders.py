"""The placeholder language of campaign content: `{{ name|filter:"arg" }}`.

Hand-written rather than Jinja2's sandbox or Django's engine: both are
full languages (loops, tags, attribute access, includes, string
arithmetic) that would have to be switched off piece by piece, and
neither spells filters this way (Jinja2 writes `default("there")`). The
grammar here has nothing to switch off. A placeholder names one value of
the device (no dots, no calls, no indexing) and passes it through at most
MAX_FILTERS filters from FILTERS; there are no tags, loops or
expressions, so rendering is one pass over the text and its output is
bounded by the text's length plus each placeholder's cap (render never
produces more than `worst_case` says).

Grammar (docs/api.md, "Placeholders"):

    placeholder := "{{" name ("|" filter (":" argument)?)* "}}"
    name        := [A-Za-z_][A-Za-z0-9_]{0,63}
    argument    := "quoted text" | 'quoted text' | integer

`{%` and `{#` (template tags, comments) are refused, so a template from
another engine fails at save time instead of being sent as written.
"""

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAX_PLACEHOLDERS = 20  # per text: a push is short
MAX_FILTERS = 5
MAX_ARGUMENT_CHARS = 200
# What one placeholder renders at most, in characters, unless truncate:N
# says otherwise (up to MAX_TRUNCATE). A name or a city fits in 100; the
# cap is what makes the worst case of a push computable at save time.
DEFAULT_CAP = 100
MAX_TRUNCATE = 1000
ELLIPSIS = "…"

_OPEN = re.compile(r"\{\{|\{%|\{#")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_FILTER = re.compile(
    r"""\s*(?P<name>[a-z_]+)\s*
        (?::\s*(?P<arg>"[^"\\]*"|'[^'\\]*'|-?\d+))?\s*\Z""",
    re.VERBOSE,
)


class PlaceholderError(ValueError):
    """A template that cannot be parsed; the message points at the place."""


@dataclass(frozen=True)
class Filter:
    name: str
    argument: str | int | None


@dataclass(frozen=True)
class Placeholder:
    source: str  # as written, "{{ first_name|default:"there" }}"
    name: str
    filters: tuple[Filter, ...]

    @property
    def cap(self) -> int:
        """The most characters this placeholder renders."""
        for item in reversed(self.filters):
            if item.name == "truncate":
                assert isinstance(item.argument, int)
                return item.argument
        return DEFAULT_CAP


Part = str | Placeholder


def _default(value: str, argument: str | int | None) -> str:
    return value if value.strip() else str(argument)


def _truncate(value: str, argument: str | int | None) -> str:
    assert isinstance(argument, int)
    return cut(value, argument)


# name -> (function, argument kind: None, "text" or "number")
FILTERS: dict[str, tuple[Callable[[str, str | int | None], str], str | None]] = {
    "default": (_default, "text"),
    "upper": (lambda value, _: value.upper(), None),
    "lower": (lambda value, _: value.lower(), None),
    "title": (lambda value, _: value.title(), None),
    "capfirst": (lambda value, _: value[:1].upper() + value[1:], None),
    "truncate": (_truncate, "number"),
}


def parse(text: str) -> tuple[Part, ...]:
    """Text and placeholders in order; PlaceholderError says what and where."""
    parts: list[Part] = []
    position = 0
    count = 0
    for opening in _OPEN.finditer(text):
        start = opening.start()
        if start < position:
            continue  # inside a placeholder already read
        if opening.group() != "{{":
            raise PlaceholderError(
                f"{opening.group()!r} at character {start + 1}: template tags and "
                "comments are not supported, only {{ placeholders }}."
            )
        end = text.find("}}", start + 2)
        if end < 0:
            raise PlaceholderError(
                f"{{{{ at character {start + 1} is never closed with }}}}."
            )
        count += 1
        if count > MAX_PLACEHOLDERS:
            raise PlaceholderError(f"At most {MAX_PLACEHOLDERS} placeholders.")
        if start > position:
            parts.append(text[position:start])
        parts.append(_placeholder(text[start : end + 2], start + 1))
        position = end + 2
    if position < len(text):
        parts.append(text[position:])
    return tuple(parts)


def _placeholder(source: str, where: int) -> Placeholder:
    def error(problem: str) -> PlaceholderError:
        return PlaceholderError(f"{source} at character {where}: {problem}")

    inner = source[2:-2]
    if "{{" in inner:
        raise error("a placeholder cannot contain another.")
    name, *filter_texts = (piece.strip() for piece in _split_pipes(inner))
    if not name:
        raise error("a name is missing, as in {{ first_name }}.")
    if not _NAME.match(name):
        raise error(
            f"{name!r} is not a name: letters, digits and _ only "
            "(no dots, brackets or calls)."
        )
    if len(filter_texts) > MAX_FILTERS:
        raise error(f"at most {MAX_FILTERS} filters.")
    return Placeholder(source, name, tuple(_filter(t, error) for t in filter_texts))


def _split_pipes(inner: str) -> list[str]:
    """Split at | outside quotes (a default may contain one)."""
    pieces, current, quote = [], "", ""
    for char in inner:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "|":
            pieces.append(current)
            current = ""
            continue
        current += char
    pieces.append(current)
    return pieces


def _filter(text: str, error: Callable[[str], PlaceholderError]) -> Filter:
    match = _FILTER.match(text)
    if match is None:
        raise error(
            f'{text.strip()!r} is not a filter; write name or name:"text" or '
            "name:number."
        )
    name, raw = match.group("name"), match.group("arg")
    if name not in FILTERS:
        known = ", ".join(sorted(FILTERS))
        raise error(f"unknown filter {name!r}; the filters are {known}.")
    kind = FILTERS[name][1]
    if kind is None:
        if raw is not None:
            raise error(f"{name} takes no argument.")
        return Filter(name, None)
    if raw is None:
        example = '"there"' if kind == "text" else "20"
        raise error(f"{name} needs an argument, as in {name}:{example}.")
    if kind == "text":
        if raw[0] not in "\"'":
            raise error(f'{name} takes quoted text, as in {name}:"there".')
        argument = raw[1:-1]
        if len(argument) > MAX_ARGUMENT_CHARS:
            raise error(f"{name}'s text is over {MAX_ARGUMENT_CHARS} characters.")
        return Filter(name, argument)
    if raw[0] in "\"'" or not 1 <= int(raw) <= MAX_TRUNCATE:
        raise error(f"{name} takes a number from 1 to {MAX_TRUNCATE}.")
    return Filter(name, int(raw))


def render(
    parts: tuple[Part, ...], values: Mapping[str, str], cap: int = MAX_TRUNCATE
) -> str:
    """The text with each placeholder filled from `values` (missing: ""),
    each at most its own cap and `cap` characters."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = clean(values.get(part.name, ""))
        for item in part.filters:
            value = FILTERS[item.name][0](value, item.argument)
        out.append(cut(clean(value), min(part.cap, cap)))
    return "".join(out)


def worst_case(parts: tuple[Part, ...], char: str) -> str:
    """The longest text `render` can produce: each placeholder at its cap,
    written with `char` (the character that costs the most bytes)."""
    return "".join(part if isinstance(part, str) else char * part.cap for part in parts)


def placeholders(parts: tuple[Part, ...]) -> list[Placeholder]:
    return [part for part in parts if isinstance(part, Placeholder)]


def clean(value: str) -> str:
    """A value as text for a notification: control characters (newlines,
    escapes, NUL) become spaces, so a value cannot break the layout or
    cost more than 4 bytes a character on the wire."""
    if value.isprintable():
        return value
    return "".join(
        " " if unicodedata.category(char) in ("Cc", "Cs") else char for char in value
    )


def cut(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    if limit <= 0:
        return ""
    return value[: limit - 1] + ELLIPSIS
