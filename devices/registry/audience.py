"""Audiences: a validated filter spec turned into one database query.

Spec keys (all optional, combined with AND):
  tags_any, tags_all, tags_none   lists of tag names
  platforms, locales, app_versions, aliases   lists of strings; a locale
                                  "en" also matches "en-US" and "en_GB"
  attributes                      list of {"key", "op", "value"}, op one of
                                  eq, ne, in, gt, gte, lt, lte, exists
  device_ids                      list of device ids (the "devices" kind)
"""

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet

from devices.models import App, Device, DeviceTag
from devices.registry.services import TAG_PATTERN

TAG_KEYS = ("tags_any", "tags_all", "tags_none")
LIST_KEYS = (
    "tags_any",
    "tags_all",
    "tags_none",
    "platforms",
    "locales",
    "app_versions",
    "aliases",
    "device_ids",
)
ATTRIBUTE_OPS = ("eq", "ne", "in", "gt", "gte", "lt", "lte", "exists")
CONDITION_KEYS = {"key", "op", "value"}
# PostgreSQL cannot compare or store U+0000 (the query failed: a 503). The
# API's parser refuses it first; the admin's audience form comes here.
NUL_MESSAGE = "Strings cannot contain the NUL character (U+0000)."
MAX_LIST = 10_000


def audience_validate(kind: str, spec: Any) -> dict[str, Any]:
    """Return a clean spec or raise ValidationError naming the bad key."""
    if not isinstance(spec, dict):
        raise ValidationError({"audience": ["Must be a JSON object."]})
    unknown = set(spec) - set(LIST_KEYS) - {"attributes"}
    if unknown:
        raise ValidationError({"audience": [f"Unknown key {sorted(unknown)[0]!r}."]})
    clean: dict[str, Any] = {}
    for key in LIST_KEYS:
        values = spec.get(key)
        if values in (None, []):
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValidationError({"audience": [f"{key} must be a list of strings."]})
        if len(values) > MAX_LIST:
            raise ValidationError({"audience": [f"{key}: at most {MAX_LIST} values."]})
        if any("\x00" in value for value in values):
            raise ValidationError({"audience": [f"{key}: {NUL_MESSAGE}"]})
        clean[key] = values
    for key in TAG_KEYS:
        # The devices' own rule (registry.services): a tag no device can
        # have would match nothing, or everything under tags_none.
        bad = [tag for tag in clean.get(key, []) if not TAG_PATTERN.match(tag)]
        if bad:
            raise ValidationError(
                {
                    "audience": [
                        f"{key}: no device can have the tag {bad[0]!r} "
                        "(1-64 of A-Z a-z 0-9 _ . : -)."
                    ]
                }
            )
    for device_id in clean.get("device_ids", []):
        try:
            uuid.UUID(device_id)
        except ValueError as exc:
            raise ValidationError(
                {"audience": [f"{device_id!r} is not a device id."]}
            ) from exc
    conditions = spec.get("attributes") or []
    if not isinstance(conditions, list):
        raise ValidationError({"audience": ["attributes must be a list."]})
    for condition in conditions:
        _check_condition(condition)
    if conditions:
        clean["attributes"] = conditions
    if kind == "devices" and not clean.get("device_ids"):
        raise ValidationError({"audience": ["List the device ids to send to."]})
    return clean


def audience_q(kind: str, spec: dict[str, Any]) -> Q:
    """The condition on Device for an audience (app and activity not included)."""
    query = Q()
    if kind == "all":
        return query
    if spec.get("device_ids"):
        query &= Q(pk__in=spec["device_ids"])
    if kind == "devices":
        return query
    if spec.get("tags_any"):
        query &= Q(_has_tags(spec["tags_any"]))
    for tag in spec.get("tags_all", []):
        query &= Q(_has_tags([tag]))
    if spec.get("tags_none"):
        query &= ~Q(_has_tags(spec["tags_none"]))
    if spec.get("platforms"):
        query &= Q(platform__in=spec["platforms"])
    if spec.get("locales"):
        locale_q = Q()
        for locale in spec["locales"]:
            locale_q |= (
                Q(locale__iexact=locale)
                | Q(locale__istartswith=f"{locale}-")
                | Q(locale__istartswith=f"{locale}_")
            )
        query &= locale_q
    if spec.get("app_versions"):
        query &= Q(app_version__in=spec["app_versions"])
    if spec.get("aliases"):
        query &= Q(alias__in=spec["aliases"])
    for condition in spec.get("attributes", []):
        query &= _attribute_q(condition)
    return query


def audience_devices(app: App, kind: str, spec: dict[str, Any]) -> QuerySet[Device]:
    return Device.objects.filter(audience_q(kind, spec), app=app, is_active=True)


def audience_estimate(app: App, kind: str, spec: dict[str, Any]) -> dict[str, int]:
    """Matching and online-now counts, computed by the database."""
    devices = audience_devices(app, kind, spec)
    return {
        "matching": devices.count(),
        "online": devices.filter(node__isnull=False).count(),
    }


def _has_tags(names: list[str]) -> Exists:
    return Exists(DeviceTag.objects.filter(device=OuterRef("pk"), name__in=names))


def _attribute_q(condition: dict[str, Any]) -> Q:
    key, op, value = condition["key"], condition["op"], condition.get("value")
    field = f"attributes__{key}"
    if op == "exists":
        return Q(**{"attributes__has_key": key})
    if op == "ne":
        return ~Q(**{field: value})
    if op == "eq":
        return Q(**{field: value})
    return Q(**{f"{field}__{op}": value})


def _check_condition(condition: Any) -> None:
    if not isinstance(condition, dict):
        raise ValidationError({"audience": ["Each attribute condition is an object."]})
    unknown = set(condition) - CONDITION_KEYS
    if unknown:
        raise ValidationError(
            {"audience": [f"Unknown attribute condition key {sorted(unknown)[0]!r}."]}
        )
    key, op = condition.get("key"), condition.get("op")
    if not isinstance(key, str) or not key.isidentifier():
        raise ValidationError(
            {"audience": ["Attribute keys are identifiers (letters, digits, _)."]}
        )
    if op not in ATTRIBUTE_OPS:
        raise ValidationError(
            {"audience": [f"Attribute op must be one of {', '.join(ATTRIBUTE_OPS)}."]}
        )
    value = condition.get("value")
    if any(isinstance(v, str) and "\x00" in v for v in _scalars(value)):
        raise ValidationError({"audience": [f"value: {NUL_MESSAGE}"]})
    if op == "in" and not isinstance(value, list):
        raise ValidationError({"audience": ["The 'in' op takes a list."]})
    if op in ("gt", "gte", "lt", "lte") and not isinstance(value, int | float):
        raise ValidationError({"audience": [f"The {op!r} op takes a number."]})


def _scalars(value: Any) -> list[Any]:
    """A condition value's scalars and keys, at any depth (iteratively)."""
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
