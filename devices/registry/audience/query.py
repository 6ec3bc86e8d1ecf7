"""One query for a condition tree (audience.grammar): a Q over Device.

Every condition gives true or false, never SQL NULL (a missing attribute is
the type "missing", not NULL), so negating one ("not", "ne", "not_in")
means exactly the opposite on PostgreSQL and SQLite alike. The meaning of
each operator is pinned by a Python model of it in the tests
(tests/unit/audience_model.py), which a property test compares with this.
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import (
    CharField,
    F,
    Func,
    Q,
    Value,
)
from django.db.models.fields.json import (
    KeyTextTransform,
    compile_json_path,
)
from django.db.models.functions import StrIndex
from django.db.models.lookups import GreaterThan, In

from devices.models import DeviceTag
from devices.registry.versions import version_key

NOTHING = Q(pk__in=[])


class AttributeType(Func):
    """The JSON type of ``attributes[key]``, named alike on every database:
    string, number, true, false, null, object, array, or missing."""

    output_field = CharField()

    def __init__(self, key: str) -> None:
        super().__init__(F("attributes"))
        self.key = key

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        value = f"({column} -> %s)"
        sql = (
            f"COALESCE(CASE WHEN jsonb_typeof({value}) = 'boolean' "
            f"THEN {value}::text ELSE jsonb_typeof({value}) END, 'missing')"
        )
        return sql, (*params, self.key) * 3

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        kind = f"json_type({column}, %s)"
        sql = (
            f"COALESCE(CASE {kind} WHEN 'integer' THEN 'number' WHEN 'real' "
            f"THEN 'number' WHEN 'text' THEN 'string' ELSE {kind} END, 'missing')"
        )
        path = compile_json_path([self.key])
        return sql, (*params, path) * 2


def tree_q(node: dict[str, Any], app_id: int) -> Q:
    """The Q of a validated tree node, for the devices of one app."""
    if "all" in node:
        query = Q()
        for child in node["all"]:
            query &= tree_q(child, app_id)
        return query
    if "any" in node:
        return _any(tree_q(child, app_id) for child in node["any"])
    if "not" in node:
        return ~tree_q(node["not"], app_id)
    return condition_q(node, app_id)


def condition_q(condition: dict[str, Any], app_id: int) -> Q:
    field, op, value = condition["field"], condition["op"], condition.get("value")
    if field == "tag":
        return _tag_q(op, value, app_id)
    if field == "attribute":
        return _attribute_q(condition["key"], op, value)
    if field == "app_version" and op in ("gt", "gte", "lt", "lte"):
        return ~Q(app_version_key="") & Q(
            **{f"app_version_key__{op}": version_key(value)}
        )
    match = {"platform": _exact, "alias": _exact, "app_version": _exact}.get(
        field, _locale
    )
    column = field
    values = [value] if op in ("eq", "ne") else value
    found = _any(match(column, item) for item in values)
    return ~found if op in ("ne", "not_in") else found


def _any(queries: Iterable[Q]) -> Q:
    """OR of the queries (each true or false); nothing for none."""
    found: Q | None = None
    for query in queries:
        found = query if found is None else found | query
    return NOTHING if found is None else found


def _exact(column: str, value: str) -> Q:
    return Q(**{column: value})


def _locale(column: str, value: str) -> Q:
    """ "fr" is fr, fr-FR, fr_CA (ASCII letters in any case)."""
    return (
        Q(locale__iexact=value)
        | Q(locale__istartswith=f"{value}-")
        | Q(locale__istartswith=f"{value}_")
    )


def _has_tags(names: list[str], app_id: int) -> Q:
    """Devices with any of the tags: an uncorrelated IN on the app's tags
    (tag_app_name_idx), which PostgreSQL hashes once even under an OR,
    where a correlated EXISTS was run again for every device (0.97 s
    against 0.17 s for 100,000 devices, docs/benchmarks.md)."""
    tagged = DeviceTag.objects.filter(app_id=app_id, name__in=names)
    return Q(pk__in=tagged.values("device_id"))


def _tag_q(op: str, value: Any, app_id: int) -> Q:
    if op == "all":
        query = Q()
        for name in value:
            query &= _has_tags([name], app_id)
        return query
    names = [value] if op in ("eq", "ne") else list(value)
    found = _has_tags(names, app_id)
    return ~found if op in ("ne", "not_in") else found


def _is_type(key: str, *kinds: str) -> Q:
    return Q(In(AttributeType(key), list(kinds)))


def _attribute_q(key: str, op: str, value: Any) -> Q:
    if op == "exists":
        return ~_is_type(key, "missing")
    if op == "not_exists":
        return _is_type(key, "missing")
    if op in ("eq", "ne"):
        found = _attribute_eq(key, value)
    elif op in ("in", "not_in"):
        found = _any(_attribute_eq(key, item) for item in value)
    elif op == "contains":
        position = StrIndex(KeyTextTransform(key, "attributes"), Value(value))
        return _is_type(key, "string") & Q(GreaterThan(position, 0))
    else:
        return _is_type(key, "number") & _key_lookup(key, op, value)
    if op in ("ne", "not_in"):
        return ~_is_type(key, "missing") & ~found
    return found


def _attribute_eq(key: str, value: Any) -> Q:
    """attributes[key] is this JSON value, of this JSON type."""
    if value is None:
        return _is_type(key, "null")
    if isinstance(value, bool):
        return _is_type(key, "true" if value else "false")
    kind = "string" if isinstance(value, str) else "number"
    return _is_type(key, kind) & _key_lookup(key, "exact", value)


def _key_lookup(key: str, op: str, value: Any) -> Q:
    """attributes[key] compared as JSON. The lookup is always named, so a
    key called like a lookup ("contains") is still taken as a key."""
    return Q(**{f"attributes__{key}__{op}": value})
