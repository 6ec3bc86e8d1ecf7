"""The audience grammar: one validator for flat keys, condition trees and
segment references (docs/api.md, "Audiences").

A spec is a JSON object; every key given applies, all combined with AND:

  tags_any, tags_all, tags_none, platforms, locales, app_versions, aliases,
  attributes, device_ids      the flat keys (lists; kept as they were)
  where                       a condition tree
  segment                     the id of a saved segment of the same app

A tree node is a group, {"all": [node, ...]} (AND), {"any": [node, ...]}
(OR) or {"not": node}, or a condition {"field", "op", "value"} ("key" too
for an attribute). Each field takes its own operators and value types
(FIELDS). The flat keys are conditions too (``spec_tree``), so one query
builder (audience.query) serves both.
"""

import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from devices.models import Platform
from devices.registry.services import TAG_PATTERN
from devices.registry.versions import is_version

FLAT_KEYS = (
    "tags_any",
    "tags_all",
    "tags_none",
    "platforms",
    "locales",
    "app_versions",
    "aliases",
    "device_ids",
)
SPEC_KEYS = (*FLAT_KEYS, "attributes", "where", "segment")
# The flat keys as conditions of the tree: key -> (field, op).
FLAT_CONDITIONS = {
    "tags_any": ("tag", "in"),
    "tags_all": ("tag", "all"),
    "tags_none": ("tag", "not_in"),
    "platforms": ("platform", "in"),
    "locales": ("locale", "in"),
    "app_versions": ("app_version", "in"),
    "aliases": ("alias", "in"),
}
GROUPS = ("all", "any", "not")
LIST_OPS = ("in", "not_in", "all")
COMPARISONS = ("gt", "gte", "lt", "lte")
NO_VALUE_OPS = ("exists", "not_exists")
# Bounds: a tree a person (or a program) writes stays far below them, and
# a query built from one stays small enough for the database.
MAX_DEPTH = 6  # groups inside groups, the outermost counted
MAX_CONDITIONS = 100
MAX_LIST = 10_000
MAX_TEXT = 1000
# PostgreSQL cannot compare or store U+0000 (the query failed: a 503). The
# API's parser refuses it first; the admin's audience form comes here.
NUL_MESSAGE = "Strings cannot contain the NUL character (U+0000)."
LOCALE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
ATTRIBUTE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Field:
    label: str
    ops: tuple[str, ...]
    values: str  # what a value is: see _check_value


FIELDS = {
    "tag": Field("Tag", ("eq", "ne", "in", "not_in", "all"), "tag"),
    "platform": Field("Platform", ("eq", "ne", "in", "not_in"), "platform"),
    "locale": Field("Locale", ("eq", "ne", "in", "not_in"), "locale"),
    "app_version": Field(
        "App version", ("eq", "ne", "in", "not_in", *COMPARISONS), "version"
    ),
    "alias": Field("Alias (user id)", ("eq", "ne", "in", "not_in"), "alias"),
    "attribute": Field(
        "Attribute",
        ("eq", "ne", "in", "not_in", *COMPARISONS, "contains", *NO_VALUE_OPS),
        "scalar",
    ),
}
OP_LABELS = {
    "eq": "is",
    "ne": "is not",
    "in": "is any of",
    "not_in": "is none of",
    "all": "has all of",
    "gt": "greater than",
    "gte": "at least",
    "lt": "less than",
    "lte": "at most",
    "contains": "contains",
    "exists": "is set",
    "not_exists": "is not set",
}


def invalid(path: str, message: str) -> ValidationError:
    where = f"{path}: " if path else ""
    return ValidationError({"audience": [f"{where}{message}"]})


def spec_validate(spec: Any, *, allow_segment: bool = True) -> dict[str, Any]:
    """The clean spec (empty flat lists dropped), or ValidationError whose
    message names the bad path (``where.any[1].value: ...``)."""
    if not isinstance(spec, dict):
        raise invalid("", "Must be a JSON object.")
    unknown = sorted(set(spec) - set(SPEC_KEYS), key=str)
    if unknown:
        raise invalid("", f"Unknown key {unknown[0]!r}.")
    clean: dict[str, Any] = {}
    for key in FLAT_KEYS:
        values = spec.get(key)
        if values in (None, []):
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise invalid("", f"{key} must be a list of strings.")
        if len(values) > MAX_LIST:
            raise invalid("", f"{key}: at most {MAX_LIST} values.")
        if any("\x00" in value for value in values):
            raise invalid("", f"{key}: {NUL_MESSAGE}")
        if key in FLAT_CONDITIONS:
            field, op = FLAT_CONDITIONS[key]
            for value in values:  # "tags_any: ..." (the form's box names it)
                _check_values(key, FIELDS[field], op, [value], single=True)
        clean[key] = values
    for device_id in clean.get("device_ids", []):
        try:
            uuid.UUID(device_id)
        except ValueError as exc:
            raise invalid("", f"{device_id!r} is not a device id.") from exc
    conditions = spec.get("attributes") or []
    if not isinstance(conditions, list):
        raise invalid("", "attributes must be a list.")
    for index, condition in enumerate(conditions):
        _check_legacy_attribute(f"attributes[{index}]", condition)
    if conditions:
        clean["attributes"] = conditions
    if spec.get("where") is not None:
        clean["where"] = _check_node(spec["where"], "where", depth=1, seen=[0])
    if spec.get("segment") is not None:
        segment = spec["segment"]
        if not allow_segment:
            raise invalid("segment", "A segment cannot refer to another segment.")
        if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
            raise invalid("segment", "The id of a saved segment (a number).")
        clean["segment"] = segment
    return clean


def spec_tree(spec: dict[str, Any]) -> dict[str, Any]:
    """A clean spec's conditions (not device_ids or segment) as one tree."""
    parts: list[dict[str, Any]] = []
    for key, (field, op) in FLAT_CONDITIONS.items():
        if spec.get(key):
            parts.append({"field": field, "op": op, "value": spec[key]})
    for condition in spec.get("attributes", []):
        parts.append({"field": "attribute", **condition})
    if spec.get("where") is not None:
        parts.append(spec["where"])
    return {"all": parts}


def _check_node(node: Any, path: str, *, depth: int, seen: list[int]) -> Any:
    if not isinstance(node, dict):
        raise invalid(path, 'A group ({"all": [...]}, "any", "not") or a condition.')
    groups = [key for key in GROUPS if key in node]
    if not groups:
        return _check_condition(node, path, seen)
    if len(node) != 1:
        raise invalid(path, "A group has exactly one key: all, any or not.")
    if depth > MAX_DEPTH:
        raise invalid(path, f"Groups nest at most {MAX_DEPTH} deep.")
    kind = groups[0]
    if kind == "not":
        return {
            "not": _check_node(node["not"], f"{path}.not", depth=depth + 1, seen=seen)
        }
    children = node[kind]
    if not isinstance(children, list) or not children:
        raise invalid(f"{path}.{kind}", "A list of at least one condition or group.")
    return {
        kind: [
            _check_node(child, f"{path}.{kind}[{index}]", depth=depth + 1, seen=seen)
            for index, child in enumerate(children)
        ]
    }


def _check_condition(
    node: dict[str, Any], path: str, seen: list[int]
) -> dict[str, Any]:
    seen[0] += 1
    if seen[0] > MAX_CONDITIONS:
        raise invalid(path, f"At most {MAX_CONDITIONS} conditions in an audience.")
    field_name = node.get("field")
    allowed = {"field", "op", "value"} | (
        {"key"} if field_name == "attribute" else set()
    )
    unknown = sorted(set(node) - allowed, key=str)
    if unknown:
        raise invalid(path, f"Unknown key {unknown[0]!r}.")
    field = FIELDS.get(field_name) if isinstance(field_name, str) else None
    if field is None:
        raise invalid(f"{path}.field", f"One of {', '.join(FIELDS)}.")
    op = node.get("op")
    if op not in field.ops:
        raise invalid(
            f"{path}.op",
            f"{op!r} does not apply to {field_name}; one of {', '.join(field.ops)}.",
        )
    clean: dict[str, Any] = {"field": field_name}
    if field_name == "attribute":
        key = node.get("key")
        if not isinstance(key, str) or not ATTRIBUTE_KEY.match(key):
            raise invalid(
                f"{path}.key", "Attribute keys are identifiers (letters, digits, _)."
            )
        clean["key"] = key
    clean["op"] = op
    if op in NO_VALUE_OPS:
        if node.get("value") is not None:
            raise invalid(f"{path}.value", f"{op!r} takes no value.")
        return clean
    if "value" not in node:
        raise invalid(f"{path}.value", "A value is required.")
    value = node["value"]
    if op in LIST_OPS:
        if not isinstance(value, list) or not value:
            raise invalid(
                f"{path}.value", f"{op!r} takes a list of at least one value."
            )
        if len(value) > MAX_LIST:
            raise invalid(f"{path}.value", f"At most {MAX_LIST} values.")
        _check_values(f"{path}.value", field, op, value)
    else:
        _check_values(f"{path}.value", field, op, [value], single=True)
    clean["value"] = value
    return clean


def _check_values(
    path: str, field: Field, op: str, values: list[Any], single: bool = False
) -> None:
    for index, value in enumerate(values):
        where = path if single else f"{path}[{index}]"
        if any(isinstance(v, str) and "\x00" in v for v in _scalars(value)):
            raise invalid(where, NUL_MESSAGE)
        _check_value(where, field, op, value)


def _check_value(path: str, field: Field, op: str, value: Any) -> None:
    kind = field.values
    if kind == "scalar":
        _check_attribute_value(path, op, value)
        return
    if not isinstance(value, str) or not value:
        raise invalid(path, "A non-empty string.")
    if kind == "tag" and not TAG_PATTERN.match(value):
        raise invalid(
            path,
            f"no device can have the tag {value!r} (1-64 of A-Z a-z 0-9 _ . : -).",
        )
    if kind == "platform" and value not in Platform.values:
        raise invalid(
            path, f"{value!r} is not a platform; one of {', '.join(Platform.values)}."
        )
    if kind == "locale" and not LOCALE.match(value):
        raise invalid(path, f"{value!r} is not a locale (like fr, en-US, pt_BR).")
    if kind == "version":
        if len(value) > 32:
            raise invalid(path, "At most 32 characters.")
        if op in COMPARISONS and not is_version(value):
            raise invalid(
                path, f"{value!r} is not a version (like 1.10 or 2.0.1-beta)."
            )
    if kind == "alias" and len(value) > 128:
        raise invalid(path, "At most 128 characters.")


def _check_attribute_value(path: str, op: str, value: Any) -> None:
    if op in COMPARISONS:
        if not _is_number(value):
            raise invalid(path, f"The {op!r} op takes a number.")
        return
    if op == "contains":
        if not isinstance(value, str) or not value:
            raise invalid(path, "'contains' takes a non-empty string.")
    elif not (value is None or isinstance(value, str | bool) or _is_number(value)):
        raise invalid(path, "A string, a number, true, false or null.")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise invalid(path, f"At most {MAX_TEXT} characters.")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def _check_legacy_attribute(path: str, condition: Any) -> None:
    """The flat spec's attribute conditions: {"key", "op", "value"}."""
    if not isinstance(condition, dict):
        raise invalid(path, "Each attribute condition is an object.")
    unknown = sorted(set(condition) - {"key", "op", "value"}, key=str)
    if unknown:
        raise invalid(path, f"Unknown attribute condition key {unknown[0]!r}.")
    key, op = condition.get("key"), condition.get("op")
    if not isinstance(key, str) or not ATTRIBUTE_KEY.match(key):
        raise invalid(path, "Attribute keys are identifiers (letters, digits, _).")
    legacy_ops = ("eq", "ne", "in", *COMPARISONS, "exists")
    if op not in legacy_ops:
        raise invalid(path, f"Attribute op must be one of {', '.join(legacy_ops)}.")
    if op == "in" and not isinstance(condition.get("value"), list):
        raise invalid(path, "The 'in' op takes a list.")
    if op == "exists":
        return
    _check_condition({"field": "attribute", **condition}, path, [0])


def _scalars(value: Any) -> list[Any]:
    """A value's scalars and keys, at any depth (iteratively): NUL is named
    as the reason wherever it hides."""
    found: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            found.extend(item)
            stack.extend(item.values())
        else:
            found.append(item)
    return found
