"""The plain-push check used by bulk paths agrees with PushSerializer:
whatever it accepts, the serializer accepts with the same data."""

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.api.pushserializers import PushSerializer, push_plain

texts = st.one_of(
    st.text(max_size=5),
    st.text(min_size=60, max_size=70),
    st.sampled_from([" padded ", "", "\ud800", "ok\x00", "x" * 201, "y" * 65]),
    st.integers(),
    st.none(),
    st.booleans(),
)
ids = st.one_of(
    st.lists(st.uuids().map(str), min_size=0, max_size=3),
    st.lists(st.uuids().map(lambda u: u.hex), min_size=1, max_size=2),
    st.lists(st.sampled_from(["nope", 7, None, str(uuid.UUID(int=1)).upper()])),
    st.just("not a list"),
)
items = st.fixed_dictionaries(
    {},
    optional={
        "device_ids": ids,
        "title": texts,
        "body": texts,
        "collapse_key": texts,
        "data": st.one_of(
            st.dictionaries(st.text(max_size=3), st.integers()), st.none(), st.just([])
        ),
        "ttl_seconds": st.one_of(
            st.integers(-5, 10**8), st.just("60"), st.just(True), st.just(1.5)
        ),
        "priority": st.sampled_from(["normal", "high", "urgent", 1]),
        "aliases": st.just(["a"]),
        "url": st.just("https://example.com"),
    },
)


@settings(max_examples=400, deadline=None)
@given(items)
def test_what_the_plain_check_accepts_the_serializer_accepts_alike(item):
    plain = push_plain(dict(item))
    if plain is None:
        return
    assert dict(PushSerializer().run_validation(dict(item))) == plain


def test_the_common_push_is_plain():
    item = {
        "device_ids": [str(uuid.uuid4())],
        "title": "Order shipped",
        "body": "",
        "data": {"order": 1},
        "ttl_seconds": 60,
        "priority": "high",
    }
    assert push_plain(item) == dict(PushSerializer().run_validation(item))
    assert push_plain({**item, "title": " padded "}) is None  # the serializer trims
