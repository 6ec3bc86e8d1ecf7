"""The audience grammar: one validator (paths in its errors, bounds), flat
specs kept as they were, versions compared as versions."""

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from devices.registry.audience import audience_devices, audience_validate
from devices.registry.audience.grammar import MAX_CONDITIONS, MAX_DEPTH
from devices.registry.versions import version_key
from tests.factories import make_device
from tests.unit.audience_model import version


def refused(spec):
    with pytest.raises(ValidationError) as caught:
        audience_validate("filter", spec)
    (message,) = caught.value.message_dict["audience"]
    return message


def test_flat_specs_are_kept_as_they_were():
    spec = {"tags_any": ["vip"], "locales": ["fr"], "tags_all": []}
    assert audience_validate("filter", spec) == {"tags_any": ["vip"], "locales": ["fr"]}


def test_a_tree_is_kept_with_the_flat_keys_beside_it():
    tree = {"any": [{"field": "tag", "op": "eq", "value": "vip"}]}
    spec = {"platforms": ["ios"], "where": tree}
    assert audience_validate("filter", spec) == spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"nope": 1}, "Unknown key 'nope'."),
        (
            {"where": {"any": [{"field": "tag", "op": "gt", "value": "vip"}]}},
            "where.any[0].op: 'gt' does not apply to tag",
        ),
        (
            {"where": {"all": [{"field": "tag", "op": "eq", "value": "v i p!"}]}},
            "where.all[0].value: no device can have the tag 'v i p!'",
        ),
        (
            {"where": {"all": [{"any": [{"field": "colour", "op": "eq"}]}]}},
            "where.all[0].any[0].field: One of tag, platform",
        ),
        ({"where": {"any": []}}, "where.any: A list of at least one"),
        ({"where": {"all": [], "any": []}}, "where: A group has exactly one key"),
        (
            {"where": {"field": "platform", "op": "in", "value": ["ios", "fax"]}},
            "where.value[1]: 'fax' is not a platform",
        ),
        (
            {"where": {"field": "app_version", "op": "gt", "value": "latest"}},
            "where.value: 'latest' is not a version",
        ),
        (
            {"where": {"field": "attribute", "key": "age", "op": "gt", "value": "9"}},
            "where.value: The 'gt' op takes a number.",
        ),
        (
            {"where": {"field": "attribute", "key": "a b", "op": "exists"}},
            "where.key: Attribute keys are identifiers",
        ),
        (
            {"where": {"field": "attribute", "key": "x", "op": "eq", "value": [1]}},
            "where.value: A string, a number, true, false or null.",
        ),
        (
            {"where": {"field": "alias", "op": "eq", "value": "a\x00"}},
            "where.value: Strings cannot contain the NUL character",
        ),
        (
            {"where": {"field": "tag", "op": "eq", "value": "vip", "x": 1}},
            "where: Unknown key 'x'.",
        ),
        ({"tags_any": ["v i p!"]}, "tags_any: no device can have the tag 'v i p!'"),
        (
            {"attributes": [{"key": "x", "op": "zz"}]},
            "attributes[0]: Attribute op must be one of",
        ),
        ({"segment": "vip"}, "segment: The id of a saved segment"),
    ],
)
def test_bad_specs_are_refused_naming_the_path(spec, expected):
    assert refused(spec).startswith(expected)


def test_depth_and_size_are_bounded():
    leaf = {"field": "tag", "op": "eq", "value": "vip"}
    deep = leaf
    for _ in range(MAX_DEPTH):
        deep = {"all": [deep]}
    assert audience_validate("filter", {"where": deep})
    assert "nest at most" in refused({"where": {"not": deep}})
    many = {"any": [leaf] * MAX_CONDITIONS}
    assert audience_validate("filter", {"where": many})
    too_many = {"any": [leaf] * (MAX_CONDITIONS + 1)}
    assert f"At most {MAX_CONDITIONS} conditions" in refused({"where": too_many})


def test_a_deeply_nested_body_is_refused_without_recursing_through_it():
    node = {"field": "tag", "op": "eq", "value": "vip"}
    for _ in range(5000):
        node = {"not": node}
    assert "nest at most" in refused({"where": node})


def test_versions_compare_as_versions():
    ordered = ["1.2.0-beta", "1.2", "1.9", "1.9.1", "1.10", "2.0.0-rc1", "v2", "10"]
    keys = [version_key(v) for v in ordered]
    assert keys == sorted(keys)
    assert version_key("1.2") == version_key("1.2.0") == version_key("1.2+build.7")
    assert version_key("latest") == ""


@given(st.lists(st.integers(0, 10**9 - 1), min_size=1, max_size=6), st.booleans())
def test_version_keys_order_like_the_versions(numbers, release):
    text = ".".join(map(str, numbers)) + ("" if release else "-beta")
    other = ".".join(map(str, reversed(numbers)))
    assert (version_key(text) < version_key(other)) == (version(text) < version(other))


@pytest.mark.django_db
def test_app_version_comparisons_in_the_database(app):
    for text in ["1.9", "1.10", "1.10.2", "2.0.0-beta", "2.0.0", "nightly"]:
        make_device(app, app_version=text, alias=text)

    def aliases(op, value):
        tree = {"field": "app_version", "op": op, "value": value}
        spec = audience_validate("filter", {"where": tree})
        return sorted(
            audience_devices(app, "filter", spec).values_list("alias", flat=True)
        )

    assert aliases("gt", "1.9") == ["1.10", "1.10.2", "2.0.0", "2.0.0-beta"]
    assert aliases("lt", "2.0") == ["1.10", "1.10.2", "1.9", "2.0.0-beta"]
    assert aliases("gte", "1.10.2") == ["1.10.2", "2.0.0", "2.0.0-beta"]
    assert aliases("eq", "1.10") == ["1.10"]


@pytest.mark.django_db
def test_flat_keys_and_the_tree_mean_the_same(app):
    make_device(app, tags=["vip"], platform="ios", locale="fr-FR", alias="a")
    make_device(app, tags=["vip"], platform="android", locale="fr", alias="b")
    make_device(app, tags=[], platform="ios", locale="en_GB", alias="c")
    make_device(app, attributes={"plan": "pro", "age": 30}, alias="d")

    def aliases(spec):
        clean = audience_validate("filter", spec)
        return sorted(
            audience_devices(app, "filter", clean).values_list("alias", flat=True)
        )

    assert aliases({"tags_any": ["vip"], "locales": ["fr"]}) == ["a", "b"]
    assert aliases({"tags_none": ["vip"]}) == ["c", "d"]
    assert aliases({"attributes": [{"key": "age", "op": "gte", "value": 30}]}) == ["d"]
    assert aliases({"attributes": [{"key": "plan", "op": "ne", "value": "x"}]}) == ["d"]
    either = {
        "all": [
            {"any": [
                {"field": "tag", "op": "eq", "value": "vip"},
                {"field": "platform", "op": "eq", "value": "ios"},
            ]},
            {"field": "locale", "op": "eq", "value": "fr"},
        ]
    }  # fmt: skip
    assert aliases({"where": either}) == ["a", "b"]
    assert aliases({"where": either, "platforms": ["ios"]}) == ["a"]
