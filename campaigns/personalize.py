"""Per-device content of a campaign: placeholders filled from the device.

The contract between the campaign sender and the template engine:

    render(fields, device) -> fields

`fields` holds a message's content (title, body, url, image, data) after
the variant and language were chosen; the result is what this device is
sent. It is pure (same input, same output) so that the sender can group
devices whose rendered content is equal into one message, and it never
raises for a device's values: a missing value takes the placeholder's
default (or nothing).

Placeholders (campaigns.placeholders) may stand in the title, the body and
the string values of data; url and image are sent as written. A value
comes from the device's own fields (alias, locale, platform, app_version,
timezone) or, for any other name, from its attributes; nothing else is
reachable. Size: `content_validate` refuses at save time content whose
longest possible rendering would not fit KPNS_MAX_PAYLOAD_BYTES; `render`
still checks each device's result and, if it does not fit (the limit was
lowered since), shortens the placeholders' values, then the body and the
title, the same way for the same input (docs/api.md, "Placeholders").
"""

import functools
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError

from campaigns import placeholders
from devices.conf import kpns_setting
from devices.delivery.messages import push_fields
from devices.delivery.protocol import JSON, Push
from devices.models import Device, Message

CONTENT_FIELDS = ("title", "body", "url", "image", "data")
TEMPLATED_FIELDS = ("title", "body")  # and data's string values
DEVICE_FIELDS = ("alias", "locale", "platform", "app_version", "timezone")
TITLE_MAX_CHARS = 200  # Message.title's column
# Costs the most bytes a character can on the wire once values are
# cleaned of control characters: 4 in UTF-8 (JSON and KMPP alike).
WIDEST_CHAR = "\U0001f600"
_EPOCH = datetime(2100, 1, 1, tzinfo=UTC)  # 13-digit timestamps


def render(fields: dict[str, Any], device: Device) -> dict[str, Any]:
    """The content `device` is sent for these campaign fields."""
    return render_values(fields, device_values(device))


def render_values(fields: dict[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """`render` for a device's values (device_values), e.g. a preview's."""
    if not has_placeholders(fields):
        return dict(fields)
    limit = kpns_setting("MAX_PAYLOAD_BYTES")

    def at(cap: int) -> dict[str, Any]:
        return _fill(fields, lambda parts: placeholders.render(parts, values, cap))

    rendered = at(placeholders.MAX_TRUNCATE)
    # Content whose worst case fits (all content saved under this limit)
    # needs no per-device measure: encoding each device's push made
    # rendering 20 times slower.
    if worst_case_bytes(_key(fields)) <= limit or push_bytes(rendered) <= limit:
        return rendered
    # Over the limit (possible only if it was lowered since the content was
    # saved): the largest cap on every placeholder's value that fits.
    low, high = 0, placeholders.MAX_TRUNCATE - 1
    while low < high:
        middle = (low + high + 1) // 2
        if push_bytes(at(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return _shorten(at(low), limit)


def device_values(device: Device) -> dict[str, str]:
    """What a placeholder can name: the device's attributes (text, numbers
    and booleans; lists and objects are left out), then its own fields,
    which win over an attribute of the same name."""
    values: dict[str, str] = {}
    attributes = device.attributes if isinstance(device.attributes, dict) else {}
    for key, value in attributes.items():
        if isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            values[key] = str(value)
    for name in DEVICE_FIELDS:
        values[name] = str(getattr(device, name) or "")
    return values


def content_validate(fields: Mapping[str, Any]) -> None:
    """Refuse content whose placeholders do not parse, or whose longest
    rendering would not fit the payload limit. ValidationError names the
    field and the placeholder."""
    errors: dict[str, list[str]] = {}
    for where, text in _texts(fields):
        try:
            parsed(text)
        except placeholders.PlaceholderError as exc:
            field = where.split(".", 1)[0]
            label = where if where != field else ""
            errors.setdefault(field, []).append(f"{label + ': ' if label else ''}{exc}")
    if errors:
        raise ValidationError(errors)
    if not has_placeholders(fields):
        return
    size = worst_case_bytes(_key(fields))
    limit = kpns_setting("MAX_PAYLOAD_BYTES")
    if size > limit:
        raise ValidationError(
            {
                _widest_field(fields): [
                    f"With the longest values its placeholders allow "
                    f"({placeholders.DEFAULT_CAP} characters each unless "
                    f"|truncate:N says less), this push would be {size} bytes; "
                    f"the limit is {limit}. Shorten the text or add "
                    f"|truncate:N to placeholders."
                ]
            }
        )


def content_of(item: Any) -> dict[str, Any]:
    """The content fields of a campaign, a template or a message."""
    return {name: getattr(item, name) for name in CONTENT_FIELDS}


@functools.lru_cache(maxsize=256)
def worst_case_bytes(key: str) -> int:
    """The encoded size of the content (JSON `key`) in its worst case:
    every placeholder at its cap, written with the widest character."""
    fields = json.loads(key)
    widest = _fill(fields, lambda parts: placeholders.worst_case(parts, WIDEST_CHAR))
    return push_bytes(widest)


def _key(fields: Mapping[str, Any]) -> str:
    return json.dumps(
        {name: fields[name] for name in CONTENT_FIELDS if name in fields},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )


def has_placeholders(fields: Mapping[str, Any]) -> bool:
    return any("{{" in text for _where, text in _texts(fields))


@functools.lru_cache(maxsize=512)
def parsed(text: str) -> tuple[placeholders.Part, ...]:
    """The parsed text (cached: a campaign renders the same texts for
    every device)."""
    return placeholders.parse(text)


def push_bytes(fields: Mapping[str, Any]) -> int:
    """The encoded size of a push frame with this content, counted as
    devices.delivery.messages does, with the widest envelope (a 64
    character collapse key, 13-digit times)."""
    message = Message(
        title=fields.get("title", ""),
        body=fields.get("body", ""),
        url=fields.get("url", ""),
        image=fields.get("image", ""),
        data=fields.get("data") or {},
        priority="normal",
        collapse_key="k" * 64,
        created_at=_EPOCH,
        expires_at=_EPOCH,
    )
    encoded = JSON.encode(Push(seq=0, **push_fields(message)))
    return len(encoded.encode() if isinstance(encoded, str) else encoded)


def _texts(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, text) of every templated text: title, body, data's strings."""
    found = [
        (name, fields[name])
        for name in TEMPLATED_FIELDS
        if isinstance(fields.get(name), str)
    ]
    stack: list[tuple[str, Any]] = [("data", fields.get("data"))]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            found.append((where, value))
        elif isinstance(value, dict):
            stack.extend((f"{where}.{key}", item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return found


def _fill(
    fields: Mapping[str, Any], fill: Callable[[tuple[placeholders.Part, ...]], str]
) -> dict[str, Any]:
    """The fields with each templated text replaced by fill(parsed text);
    a text that does not parse (saved before placeholders existed) stays."""

    def one(text: str) -> str:
        if "{{" not in text:
            return text
        try:
            return fill(parsed(text))
        except placeholders.PlaceholderError:
            return text

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return one(value)
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    out = dict(fields)
    for name in TEMPLATED_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = one(out[name])
    if "title" in out and isinstance(out["title"], str):
        out["title"] = placeholders.cut(out["title"], TITLE_MAX_CHARS)
    if isinstance(out.get("data"), dict):
        out["data"] = walk(out["data"])
    return out


def _shorten(fields: dict[str, Any], limit: int) -> dict[str, Any]:
    """Cut the body, then the title, to the longest that fits (a binary
    search on characters: the same input always gives the same cut)."""
    out = dict(fields)
    for name in ("body", "title"):
        text = out.get(name) or ""
        if push_bytes(out) <= limit or not text:
            continue
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            out[name] = placeholders.cut(text, middle)
            if push_bytes(out) <= limit:
                low = middle
            else:
                high = middle - 1
        out[name] = placeholders.cut(text, low) if low else ""
    return out


def _widest_field(fields: Mapping[str, Any]) -> str:
    """The field whose placeholders can grow the most (for the error)."""
    growth: dict[str, int] = {}
    for where, text in _texts(fields):
        field = where.split(".", 1)[0].split("[", 1)[0]
        caps = sum(p.cap for p in placeholders.placeholders(parsed(text)))
        growth[field] = growth.get(field, 0) + caps
    return max(growth, key=lambda name: (growth[name], name))
