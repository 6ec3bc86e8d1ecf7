"""The device wire protocol: both codecs, push templates, hostile input."""

import dataclasses
import json
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.delivery.protocol import (
    JSON,
    KMPP,
    MAX_DATA_DEPTH,
    MAX_SAFE_INT,
    PROTOCOL_VERSION,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_KMPP,
    TOKEN_SUBPROTOCOL_PREFIX,
    Ack,
    Codec,
    Error,
    Hello,
    Opened,
    Ping,
    Pong,
    ProtocolError,
    Push,
    Resync,
    Welcome,
    error_frame,
    negotiate,
    token_from_subprotocols,
)

CODECS = [JSON, KMPP]
codecs = pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)

# --- Strategies for valid frames. -------------------------------------------

counts = st.integers(min_value=0, max_value=MAX_SAFE_INT)
seqs = st.integers(min_value=1, max_value=MAX_SAFE_INT)
safe_ints = st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
ids = st.text(min_size=1, max_size=64)
texts = st.text()
scalars = (
    st.none()
    | st.booleans()
    | safe_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)


def json_values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return scalars
    inner = json_values(depth - 1)
    return (
        scalars
        | st.lists(inner, max_size=4)
        | st.dictionaries(texts, inner, max_size=4)
    )


data_dicts = st.dictionaries(texts, json_values(3), max_size=5)

push_fields = st.fixed_dictionaries(
    {
        "id": ids,
        "title": texts,
        "body": texts,
        "url": texts,
        "image": texts,
        "data": data_dicts,
        "priority": st.sampled_from(["normal", "high"]),
        "collapse_key": st.none() | texts,
        "sent_at": counts,
        "expires_at": counts,
    }
)
pushes = st.builds(lambda fields, seq: Push(seq=seq, **fields), push_fields, seqs)

client_frames = st.one_of(
    st.builds(Hello, last_seq=counts),
    st.builds(Ack, id=ids, seq=seqs),
    st.builds(Opened, id=ids, seq=seqs),
    st.builds(Ping, t=st.none() | safe_ints),
)
server_frames = st.one_of(
    st.builds(
        Welcome, device_id=ids, last_seq=counts, heartbeat=counts, max_frame=counts
    ),
    pushes,
    st.builds(Pong, t=st.none() | safe_ints),
    st.builds(Error, code=st.text(min_size=1), message=texts, ref=st.none() | texts),
    st.builds(Resync, reason=texts, last_seq=counts),
)

PUSH_FIELDS: dict[str, Any] = {
    "id": "m_1",
    "title": "Sale",
    "body": "50% off — today only 🎉",
    "url": "https://example.com/sale",
    "image": "",
    "data": {"campaign": 7, "tags": ["a", "b"], "nested": {"x": None}},
    "priority": "high",
    "collapse_key": None,
    "sent_at": 1_700_000_000_000,
    "expires_at": 1_700_086_400_000,
}


def kmpp(code: int, *fields: Any) -> bytes:
    return bytes([code]) + msgpack.packb(list(fields), use_bin_type=True)


def decode_error(codec: Codec, data: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        codec.decode_client(data)
    return info.value


# --- Round trips. ------------------------------------------------------------


@codecs
@given(frame=client_frames)
def test_every_client_frame_round_trips(codec: Codec, frame: Any) -> None:
    assert codec.decode_client(codec.encode(frame)) == frame


@codecs
@given(frame=server_frames)
def test_every_server_frame_round_trips(codec: Codec, frame: Any) -> None:
    assert codec.decode_server(codec.encode(frame)) == frame


@codecs
@given(frame=client_frames | server_frames)
def test_encoding_gives_text_for_json_and_bytes_for_kmpp(
    codec: Codec, frame: Any
) -> None:
    assert isinstance(codec.encode(frame), bytes if codec.binary else str)


# --- Exact wire forms. ---------------------------------------------------------


def test_json_frames_carry_type_and_fields_by_name() -> None:
    assert JSON.encode(Ack("m_1", 3)) == '{"type":"ack","id":"m_1","seq":3}'
    assert JSON.encode(Hello(5)) == '{"type":"hello","last_seq":5}'
    assert JSON.encode(Resync("gap", 9)) == (
        '{"type":"resync","reason":"gap","last_seq":9}'
    )


def test_json_omits_absent_optional_fields_of_ping_pong_and_error() -> None:
    assert JSON.encode(Ping()) == '{"type":"ping"}'
    assert JSON.encode(Pong()) == '{"type":"pong"}'
    assert JSON.encode(Pong(12)) == '{"type":"pong","t":12}'
    assert JSON.encode(Error("x", "y")) == '{"type":"error","code":"x","message":"y"}'


def test_json_push_writes_every_field_with_seq_right_after_type() -> None:
    encoded = JSON.encode(Push(seq=4, **PUSH_FIELDS))
    expected = json.dumps(
        {"type": "push", "seq": 4, **PUSH_FIELDS},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert encoded == expected
    assert '"collapse_key":null' in encoded
    assert "🎉" in encoded  # not \u-escaped


def test_kmpp_frame_is_type_byte_then_one_array_in_field_order() -> None:
    assert KMPP.encode(Ack("m_1", 3)) == kmpp(0x02, "m_1", 3)
    assert KMPP.encode(Ping()) == kmpp(0x04, None)
    assert KMPP.encode(Error("x", "y")) == kmpp(0x14, "x", "y", None)
    values = list(PUSH_FIELDS.values())
    assert KMPP.encode(Push(seq=4, **PUSH_FIELDS)) == kmpp(
        0x12, values[0], 4, *values[1:]
    )


def test_type_codes_match_the_spec() -> None:
    codes = {cls: cls.KMPP_CODE for cls in (Hello, Ack, Opened, Ping)}
    codes |= {cls: cls.KMPP_CODE for cls in (Welcome, Push, Pong, Error, Resync)}
    assert list(codes.values()) == [1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x15]


def test_codecs_are_named_after_their_subprotocols() -> None:
    assert (JSON.name, JSON.binary) == (SUBPROTOCOL_JSON, False)
    assert (KMPP.name, KMPP.binary) == (SUBPROTOCOL_KMPP, True)
    assert PROTOCOL_VERSION == 1


# --- Push templates. -------------------------------------------------------------


@codecs
@given(fields=push_fields, seq=seqs)
def test_push_template_renders_exactly_what_encode_writes(
    codec: Codec, fields: dict[str, Any], seq: int
) -> None:
    template = codec.push_template(fields)
    assert template.render(seq) == codec.encode(Push(seq=seq, **fields))


@codecs
@given(push=pushes, seq=seqs)
def test_push_template_from_a_push_ignores_its_seq(
    codec: Codec, push: Push, seq: int
) -> None:
    rendered = codec.push_template(push).render(seq)
    assert codec.decode_server(rendered) == dataclasses.replace(push, seq=seq)


@codecs
def test_push_template_renders_independent_of_the_generic_encoder(
    codec: Codec,
) -> None:
    rendered = codec.push_template(PUSH_FIELDS).render(2**40)
    if codec.binary:
        values = list(PUSH_FIELDS.values())
        assert rendered == kmpp(0x12, values[0], 2**40, *values[1:])
    else:
        assert json.loads(rendered) == {"type": "push", "seq": 2**40, **PUSH_FIELDS}


@codecs
@pytest.mark.parametrize("seq", [-1, True, 1.0, MAX_SAFE_INT + 1, "1"])
def test_push_template_refuses_a_bad_seq(codec: Codec, seq: Any) -> None:
    with pytest.raises(ValueError):
        codec.push_template(PUSH_FIELDS).render(seq)


@codecs
def test_push_with_seq_zero_encodes_for_size_checks(codec: Codec) -> None:
    assert codec.encode(Push(seq=0, **PUSH_FIELDS))


@codecs
def test_push_template_rejects_a_seq_among_the_fields(codec: Codec) -> None:
    with pytest.raises(TypeError):
        codec.push_template({**PUSH_FIELDS, "seq": 3})


# --- Encoding our own invalid frames is a bug: ValueError, not ProtocolError. ---


@codecs
@pytest.mark.parametrize(
    "change",
    [
        {"data": {1: "int key"}},
        {"data": {"x": float("nan")}},
        {"data": {"x": b"bytes"}},
        {"data": {"x": 2**60}},
        {"data": ["not", "a", "dict"]},
        {"priority": "urgent"},
        {"id": ""},
        {"id": "x" * 65},
        {"title": None},
        {"sent_at": -1},
    ],
)
def test_encoding_an_invalid_push_raises_value_error(
    codec: Codec, change: dict[str, Any]
) -> None:
    with pytest.raises(ValueError) as info:
        codec.encode(Push(seq=1, **{**PUSH_FIELDS, **change}))
    assert not isinstance(info.value, ProtocolError)


@codecs
@pytest.mark.parametrize(
    "frame", [Ack("m", 0), Hello(-1), Ping(True), Welcome("", 0, 30, 4096)]
)
def test_encoding_an_invalid_frame_raises_value_error(codec: Codec, frame: Any) -> None:
    with pytest.raises(ValueError):
        codec.encode(frame)


@codecs
def test_encoding_something_that_is_not_a_frame_raises_type_error(
    codec: Codec,
) -> None:
    with pytest.raises(TypeError):
        codec.encode({"type": "ping"})  # type: ignore[arg-type]


@codecs
def test_data_nested_up_to_the_depth_limit_is_accepted(codec: Codec) -> None:
    def nest(depth: int) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for _ in range(depth - 1):
            data = {"a": data}
        return data

    push = Push(seq=1, **{**PUSH_FIELDS, "data": nest(MAX_DATA_DEPTH)})
    assert codec.decode_server(codec.encode(push)) == push
    with pytest.raises(ValueError):
        codec.encode(Push(seq=1, **{**PUSH_FIELDS, "data": nest(MAX_DATA_DEPTH + 1)}))


# --- Lenient on what is optional. -----------------------------------------------


def test_json_hello_without_last_seq_resumes_from_zero() -> None:
    assert JSON.decode_client('{"type":"hello"}') == Hello(0)


def test_json_ping_without_t_has_no_timestamp() -> None:
    assert JSON.decode_client('{"type":"ping"}') == Ping(None)


def test_json_push_without_collapse_key_has_none() -> None:
    obj = {"type": "push", "seq": 1, **PUSH_FIELDS}
    del obj["collapse_key"]
    assert JSON.decode_server(json.dumps(obj)).collapse_key is None


def test_json_client_frame_ignores_unknown_extra_fields() -> None:
    frame = JSON.decode_client('{"type":"ack","id":"m_1","seq":3,"future":[1,{}]}')
    assert frame == Ack("m_1", 3)


def test_json_accepts_a_negative_ping_timestamp() -> None:
    assert JSON.decode_client('{"type":"ping","t":-5}') == Ping(-5)


# --- Garbage never escapes as anything but ProtocolError. ----------------------


def garbage_json_objects() -> st.SearchStrategy[str]:
    field_names = st.sampled_from(
        ["type", "id", "seq", "last_seq", "t", "data", "title", "x"]
    )
    values = json_values(2) | st.sampled_from(["hello", "ack", "opened", "ping"])
    objects = st.dictionaries(field_names, values, max_size=5)
    return objects.map(json.dumps)


def garbage_kmpp_frames() -> st.SearchStrategy[bytes]:
    packable = json_values(2) | st.binary(max_size=8)
    arrays = st.lists(packable, max_size=12)
    body = arrays.map(lambda a: msgpack.packb(a, use_bin_type=True))
    return st.builds(lambda code, b: bytes([code]) + b, st.integers(0, 255), body)


@codecs
@given(data=st.text() | st.binary() | garbage_json_objects() | garbage_kmpp_frames())
def test_decoding_garbage_raises_only_protocol_error(
    codec: Codec, data: str | bytes
) -> None:
    for decode in (codec.decode_client, codec.decode_server):
        try:
            frame = decode(data)
        except ProtocolError as exc:
            assert exc.code in ("bad_frame", "unknown_type", "invalid_field")
            assert error_frame(exc).code == exc.code
        else:  # garbage that happens to be valid must survive a round trip
            assert decode(codec.encode(frame)) == frame


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{",
        "not json",
        "[1, 2]",
        '"ack"',
        "null",
        "[" * 100_000,
        '{"a":' * 100_000,
        '{"type":"ping","t":NaN}',
        '{"type":"ping","t":' + "9" * 5000 + "}",
        '{"type":"ping"}\ud800',
    ],
)
def test_undecodable_json_is_bad_frame(data: str) -> None:
    error = decode_error(JSON, data)
    assert (error.code, error.ref) == ("bad_frame", None)


def test_binary_frame_to_json_codec_is_bad_frame() -> None:
    assert decode_error(JSON, b'{"type":"ping"}').code == "bad_frame"


def test_text_frame_to_kmpp_codec_is_bad_frame() -> None:
    assert decode_error(KMPP, "\x04\x91\xc0").code == "bad_frame"


def test_ack_with_boolean_seq_is_invalid_field() -> None:
    error = decode_error(JSON, '{"type":"ack","id":"x","seq":true}')
    assert (error.code, error.ref) == ("invalid_field", "ack")
    assert "seq" in error.message


def test_ack_with_float_seq_is_invalid_field() -> None:
    assert decode_error(JSON, '{"type":"ack","id":"x","seq":3.0}').code == (
        "invalid_field"
    )
    assert decode_error(KMPP, kmpp(0x02, "x", 3.0)).code == "invalid_field"


@pytest.mark.parametrize("seq", [0, -1, 2**53, 10**30])
def test_ack_with_seq_out_of_range_is_invalid_field(seq: int) -> None:
    data = f'{{"type":"ack","id":"x","seq":{seq}}}'
    assert "seq" in decode_error(JSON, data).message


def test_kmpp_ack_with_uint64_max_seq_is_invalid_field() -> None:
    data = b"\x02\x92\xa1x\xcf" + b"\xff" * 8  # msgpack uint64, 2**64 - 1
    assert decode_error(KMPP, data).code == "invalid_field"


def test_negative_last_seq_is_invalid_field() -> None:
    error = decode_error(JSON, '{"type":"hello","last_seq":-1}')
    assert (error.code, error.ref) == ("invalid_field", "hello")
    assert "last_seq" in error.message
    assert decode_error(KMPP, kmpp(0x01, -1)).code == "invalid_field"


def test_missing_field_is_invalid_field_naming_it() -> None:
    error = decode_error(JSON, '{"type":"opened","id":"x"}')
    assert (error.code, error.ref) == ("invalid_field", "opened")
    assert "'seq'" in error.message


@pytest.mark.parametrize("field_id", ['""', json.dumps("x" * 65), "7", "null"])
def test_ack_with_bad_id_is_invalid_field(field_id: str) -> None:
    error = decode_error(JSON, f'{{"type":"ack","id":{field_id},"seq":1}}')
    assert (error.code, "'id'" in error.message) == ("invalid_field", True)


def test_escaped_lone_surrogate_in_id_is_invalid_field() -> None:
    assert decode_error(JSON, r'{"type":"ack","id":"\ud800","seq":1}').code == (
        "invalid_field"
    )


@pytest.mark.parametrize("data", ['{"seq":1}', '{"type":7}', '{"type":null}'])
def test_missing_or_non_string_type_is_invalid_field(data: str) -> None:
    error = decode_error(JSON, data)
    assert error.code == "invalid_field"
    assert "type" in error.message


@pytest.mark.parametrize("kind", ["nope", "push", "welcome", "HELLO"])
def test_unknown_or_server_type_from_a_client_is_unknown_type(kind: str) -> None:
    error = decode_error(JSON, json.dumps({"type": kind}))
    assert (error.code, error.ref) == ("unknown_type", None)


def test_client_type_sent_to_an_sdk_is_unknown_type() -> None:
    with pytest.raises(ProtocolError) as info:
        JSON.decode_server('{"type":"ping"}')
    assert info.value.code == "unknown_type"


def test_unknown_type_message_does_not_echo_a_huge_type() -> None:
    error = decode_error(JSON, json.dumps({"type": "x" * 10_000}))
    assert len(error.message) < 100


@pytest.mark.parametrize("code", [0x00, 0x06, 0x12, 0xFF])
def test_unknown_kmpp_type_byte_is_unknown_type(code: int) -> None:
    assert decode_error(KMPP, kmpp(code, 1)).code == "unknown_type"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x04",  # type byte without a body
        b"\x04\x91",  # truncated array
        b"\x04\xc1",  # reserved msgpack byte
        b"\x04" + b"\x91" * 100_000,  # nesting beyond msgpack's stack
        kmpp(0x04, None) + b"\x00",  # trailing bytes
        b"\x04\x81\x01\xc0",  # map with an int key
        b"\x04" + msgpack.packb({"t": 1}),  # a map, not an array
        b"\x04\x01",  # a scalar, not an array
        b"\x02\x92\xa2\xff\xfe\x01",  # invalid UTF-8 in a str
    ],
)
def test_undecodable_kmpp_is_bad_frame(data: bytes) -> None:
    assert decode_error(KMPP, data).code == "bad_frame"


@pytest.mark.parametrize(
    "data", [kmpp(0x02, "x"), kmpp(0x02, "x", 1, 2), kmpp(0x01), kmpp(0x04)]
)
def test_kmpp_array_with_wrong_arity_is_invalid_field(data: bytes) -> None:
    error = decode_error(KMPP, data)
    assert error.code == "invalid_field"
    assert "fields" in error.message


def test_kmpp_binary_where_a_string_is_expected_is_invalid_field() -> None:
    assert decode_error(KMPP, kmpp(0x02, b"x", 1)).code == "invalid_field"


def test_kmpp_accepts_bytearray_and_memoryview() -> None:
    raw = kmpp(0x02, "m", 1)
    assert KMPP.decode_client(bytearray(raw)) == Ack("m", 1)
    assert KMPP.decode_client(memoryview(raw)) == Ack("m", 1)


def test_kmpp_push_data_with_binary_values_is_invalid_field() -> None:
    values = list({**PUSH_FIELDS, "data": {"x": b"\x00"}}.values())
    with pytest.raises(ProtocolError) as info:
        KMPP.decode_server(kmpp(0x12, values[0], 1, *values[1:]))
    assert (info.value.code, info.value.ref) == ("invalid_field", "push")


# --- Errors. --------------------------------------------------------------------


def test_error_frame_carries_code_message_and_ref() -> None:
    exc = ProtocolError("invalid_field", "field 'seq' is wrong", "ack")
    assert error_frame(exc) == Error("invalid_field", "field 'seq' is wrong", "ack")
    assert str(exc) == "invalid_field: field 'seq' is wrong (in ack frame)"
    assert str(ProtocolError("bad_frame", "not valid JSON")) == (
        "bad_frame: not valid JSON"
    )


# --- Subprotocol negotiation and the token. -----------------------------------


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ([], (JSON, None)),
        (["kpns.token.abc"], (JSON, None)),
        (["something.else"], (JSON, None)),
        (["kpns.json.v1"], (JSON, "kpns.json.v1")),
        (["kmpp.v1"], (KMPP, "kmpp.v1")),
        (["kpns.token.abc", "kmpp.v1", "kpns.json.v1"], (KMPP, "kmpp.v1")),
        (["kpns.json.v1", "kmpp.v1"], (JSON, "kpns.json.v1")),
        (["kmpp.v2", "kpns.json.v1"], (JSON, "kpns.json.v1")),
    ],
)
def test_negotiate_picks_the_first_offered_encoding(
    offered: list[str], expected: tuple[Codec, str | None]
) -> None:
    assert negotiate(offered) == expected


@pytest.mark.parametrize(
    ("offered", "token"),
    [
        ([], None),
        (["kpns.json.v1"], None),
        (["kpns.json.v1", "kpns.token.abc-DEF_123"], "abc-DEF_123"),
        (["kpns.token.first", "kpns.token.second"], "first"),
        (["kpns.token."], None),
        (["xkpns.token.abc"], None),
    ],
)
def test_token_comes_from_the_token_subprotocol(
    offered: list[str], token: str | None
) -> None:
    assert TOKEN_SUBPROTOCOL_PREFIX == "kpns.token."
    assert token_from_subprotocols(offered) == token
