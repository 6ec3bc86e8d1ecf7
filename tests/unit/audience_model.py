"""What an audience condition tree means, written plainly in Python: the
oracle the query builder (devices.registry.audience.query) is compared with
on random devices and trees (test_audience_property.py).

Written from docs/api.md ("Audiences"), sharing no code with the builder.
"""

import re
from typing import Any

VERSION = re.compile(r"^[vV]?(\d{1,9}(?:\.\d{1,9}){0,5})([-+A-Za-z].*)?$")


def json_type(attributes: dict[str, Any], key: str) -> str:
    if key not in attributes:
        return "missing"
    value = attributes[key]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def version(text: str) -> tuple[Any, ...] | None:
    """(numbers padded to 6, 1 for a release / 0 for a pre-release)."""
    found = VERSION.match(text.strip())
    if found is None:
        return None
    numbers = [int(n) for n in found.group(1).split(".")]
    suffix = found.group(2) or ""
    return (*numbers, *[0] * (6 - len(numbers)), int(not suffix or suffix[0] == "+"))


def locale_is(locale: str, wanted: str) -> bool:
    here, wanted = locale.lower(), wanted.lower()
    return here == wanted or here.startswith((wanted + "-", wanted + "_"))


def same_json(stored: Any, wanted: Any, stored_type: str) -> bool:
    wanted_type = json_type({"v": wanted}, "v")
    return stored_type == wanted_type and (
        stored_type in ("null", "true", "false") or stored == wanted
    )


def matches(node: dict[str, Any], device: dict[str, Any]) -> bool:
    if "all" in node:
        return all(matches(child, device) for child in node["all"])
    if "any" in node:
        return any(matches(child, device) for child in node["any"])
    if "not" in node:
        return not matches(node["not"], device)
    field, op, value = node["field"], node["op"], node.get("value")
    if field == "attribute":
        return attribute_matches(device["attributes"], node["key"], op, value)
    if field == "tag":
        tags = device["tags"]
        return {
            "eq": lambda: value in tags,
            "ne": lambda: value not in tags,
            "in": lambda: bool(tags & set(value)),
            "not_in": lambda: not tags & set(value),
            "all": lambda: set(value) <= tags,
        }[op]()
    here = device[field]
    if field == "app_version" and op in ("gt", "gte", "lt", "lte"):
        mine, theirs = version(here), version(value)
        if mine is None:
            return False
        return {
            "gt": mine > theirs,
            "gte": mine >= theirs,
            "lt": mine < theirs,
            "lte": mine <= theirs,
        }[op]
    same = locale_is if field == "locale" else (lambda a, b: a == b)
    values = [value] if op in ("eq", "ne") else value
    found = any(same(here, item) for item in values)
    return not found if op in ("ne", "not_in") else found


def attribute_matches(
    attributes: dict[str, Any], key: str, op: str, value: Any
) -> bool:
    kind = json_type(attributes, key)
    stored = attributes.get(key)
    if op == "exists":
        return kind != "missing"
    if op == "not_exists":
        return kind == "missing"
    if op in ("gt", "gte", "lt", "lte"):
        if kind != "number":
            return False
        return {
            "gt": stored > value,
            "gte": stored >= value,
            "lt": stored < value,
            "lte": stored <= value,
        }[op]
    if op == "contains":
        return kind == "string" and value in stored
    values = [value] if op in ("eq", "ne") else value
    found = any(same_json(stored, item, kind) for item in values)
    if op in ("ne", "not_in"):
        return kind != "missing" and not found
    return found
