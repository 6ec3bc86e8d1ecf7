"""The query builder agrees with the Python model of the grammar
(audience_model.py) on random devices and random condition trees, on the
database the suite runs on (SQLite or PostgreSQL)."""

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.models import Device, Platform
from devices.registry.audience import audience_devices, audience_validate
from tests.factories import make_app, make_device
from tests.unit.audience_model import matches

pytestmark = pytest.mark.django_db

TAGS = ["vip", "beta", "news"]
LOCALES = ["", "fr", "fr-FR", "FR_ca", "fra", "en", "en-US", "de"]
VERSIONS = ["", "1.9", "1.10", "1.10.0", "1.2.3.4", "2.0.0-beta", "2.0.0", "v2", "2+b7"]
VERSIONS_ANY = st.sampled_from([*VERSIONS, "abc"]) | st.builds(
    lambda parts: ".".join(map(str, parts)),
    st.lists(st.integers(0, 12), min_size=1, max_size=4),
)
ALIASES = ["", "user-1", "user-2"]
KEYS = ["plan", "age", "flag"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, -1.5, 3.0, 2.25]),
    st.sampled_from(["pro", "Pro", "free", "pr", "", "a%b", "x_y"]),
)
STORED = SCALARS | st.lists(st.integers(0, 2), max_size=2) | st.just({"a": 1})

devices = st.fixed_dictionaries(
    {
        "platform": st.sampled_from(Platform.values),
        "locale": st.sampled_from(LOCALES),
        "app_version": VERSIONS_ANY,
        "alias": st.sampled_from(ALIASES),
        "tags": st.sets(st.sampled_from(TAGS)),
        "attributes": st.dictionaries(st.sampled_from(KEYS), STORED, max_size=3),
    }
)


def values(field, op):
    """Valid values of a field for an operator."""
    one = {
        "tag": st.sampled_from(TAGS + ["other"]),
        "platform": st.sampled_from(Platform.values),
        "locale": st.sampled_from(["fr", "FR", "fr-fr", "en", "de", "f"]),
        "app_version": st.sampled_from(VERSIONS[1:] + ["1.9.9", "10"]),
        "alias": st.sampled_from(ALIASES[1:] + ["nobody"]),
    }.get(field)
    if field == "attribute":
        if op in ("gt", "gte", "lt", "lte"):
            return st.integers(-3, 3) | st.sampled_from([0.5, 3.0, -1.5])
        if op == "contains":
            return st.sampled_from(["p", "ro", "%", "_", "Pro", "fre"])
        one = SCALARS
    if op in ("in", "not_in", "all"):
        return st.lists(one, min_size=1, max_size=3)
    return one


OPS = {
    "tag": ["eq", "ne", "in", "not_in", "all"],
    "platform": ["eq", "ne", "in", "not_in"],
    "locale": ["eq", "ne", "in", "not_in"],
    "app_version": ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte"],
    "alias": ["eq", "ne", "in", "not_in"],
    "attribute": [
        "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains",
        "exists", "not_exists",
    ],
}  # fmt: skip


@st.composite
def conditions(draw):
    field = draw(st.sampled_from(sorted(OPS)))
    op = draw(st.sampled_from(OPS[field]))
    node = {"field": field, "op": op}
    if field == "attribute":
        node["key"] = draw(st.sampled_from(KEYS))
    if op not in ("exists", "not_exists"):
        node["value"] = draw(values(field, op))
    return node


trees = st.recursive(
    conditions(),
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=8,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(population=st.lists(devices, min_size=1, max_size=6), tree=trees)
def test_the_query_matches_exactly_the_devices_the_model_says(population, tree):
    with transaction.atomic():
        app = make_app()
        expected = set()
        for device in population:
            registered, _ = make_device(
                app, **{**device, "tags": sorted(device["tags"])}
            )
            if matches(tree, device):
                expected.add(registered.pk)
        spec = audience_validate("filter", {"where": tree})
        got = set(audience_devices(app, "filter", spec).values_list("pk", flat=True))
        transaction.set_rollback(True)
    assert got == expected, (tree, population)


def test_devices_registered_with_a_version_get_its_sort_key(app):
    device, _ = make_device(app, app_version="1.10")
    assert Device.objects.get(pk=device.pk).app_version_key.startswith("000000001.")
