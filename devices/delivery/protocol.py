"""The device wire protocol: frames, the JSON and KMPP codecs, negotiation.

This is the only place that builds or parses frames. It has no Django
imports so that SDKs and test clients can reuse it as is.
"""

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeAlias

import msgpack

PROTOCOL_VERSION = 1
# 1.1 added ack_upto (cumulative acknowledgement); 1.0 clients are unaffected.
PROTOCOL_REVISION = "1.1"
SUBPROTOCOL_JSON = "kpns.json.v1"
SUBPROTOCOL_KMPP = "kmpp.v1"
TOKEN_SUBPROTOCOL_PREFIX = "kpns.token."  # noqa: S105 - a prefix, not a secret

MAX_SAFE_INT = 2**53 - 1  # JavaScript SDKs lose precision above this
MAX_ID_LENGTH = 64
MAX_DATA_DEPTH = 32  # keeps every encoder and SDK decoder far from recursion limits

BAD_FRAME = "bad_frame"
UNKNOWN_TYPE = "unknown_type"
INVALID_FIELD = "invalid_field"


class ProtocolError(Exception):
    """The peer sent a frame we cannot accept; maps 1:1 onto an Error frame."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(code, message, ref)
        self.code = code
        self.message = message
        self.ref = ref  # type of the offending frame, when known

    def __str__(self) -> str:
        where = f" (in {self.ref} frame)" if self.ref else ""
        return f"{self.code}: {self.message}{where}"


# Frames. TYPE is the JSON "type", KMPP_CODE the KMPP type byte.


@dataclass(frozen=True, slots=True)
class Hello:
    TYPE: ClassVar[str] = "hello"
    KMPP_CODE: ClassVar[int] = 0x01
    last_seq: int = 0  # highest seq the app has processed: the resume point


@dataclass(frozen=True, slots=True)
class Ack:
    TYPE: ClassVar[str] = "ack"
    KMPP_CODE: ClassVar[int] = 0x02
    id: str
    seq: int


@dataclass(frozen=True, slots=True)
class AckUpto:
    """Every push this socket carried with a seq up to `seq` was handled."""

    TYPE: ClassVar[str] = "ack_upto"
    KMPP_CODE: ClassVar[int] = 0x05
    seq: int


@dataclass(frozen=True, slots=True)
class Opened:
    TYPE: ClassVar[str] = "opened"
    KMPP_CODE: ClassVar[int] = 0x03
    id: str
    seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    TYPE: ClassVar[str] = "ping"
    KMPP_CODE: ClassVar[int] = 0x04
    t: int | None = None  # opaque client timestamp, echoed in Pong


@dataclass(frozen=True, slots=True)
class Welcome:
    TYPE: ClassVar[str] = "welcome"
    KMPP_CODE: ClassVar[int] = 0x11
    device_id: str
    last_seq: int
    heartbeat: int
    max_frame: int


@dataclass(frozen=True, slots=True)
class Push:
    TYPE: ClassVar[str] = "push"
    KMPP_CODE: ClassVar[int] = 0x12
    id: str
    seq: int  # 0 only in templates and size checks; never on the wire
    title: str
    body: str
    url: str
    image: str
    data: dict[str, Any]
    priority: str
    collapse_key: str | None
    sent_at: int  # ms since epoch
    expires_at: int  # ms since epoch


@dataclass(frozen=True, slots=True)
class Pong:
    TYPE: ClassVar[str] = "pong"
    KMPP_CODE: ClassVar[int] = 0x13
    t: int | None = None


@dataclass(frozen=True, slots=True)
class Error:
    TYPE: ClassVar[str] = "error"
    KMPP_CODE: ClassVar[int] = 0x14
    code: str
    message: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Resync:
    TYPE: ClassVar[str] = "resync"
    KMPP_CODE: ClassVar[int] = 0x15
    reason: str
    last_seq: int  # messages before this were dropped; refresh from the backend


ClientFrame: TypeAlias = Hello | Ack | AckUpto | Opened | Ping
ServerFrame: TypeAlias = Welcome | Push | Pong | Error | Resync
Frame: TypeAlias = ClientFrame | ServerFrame


def error_frame(exc: ProtocolError) -> Error:
    return Error(code=exc.code, message=exc.message, ref=exc.ref)


# Validation, shared by both codecs and by encode.


def _utf8(value: str) -> bool:
    # JSON "\ud800" escapes parse into lone surrogates that cannot be sent
    # or stored as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_int(value: Any, minimum: int) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)  # JSON true must not pass as 1
        and minimum <= value <= MAX_SAFE_INT
    )


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and _utf8(value)


def _is_id(value: Any) -> bool:
    return _is_text(value) and 0 < len(value) <= MAX_ID_LENGTH


def _is_json_object(value: Any) -> bool:
    # Iterative so that hostile nesting cannot overflow the Python stack.
    if not isinstance(value, dict):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DATA_DEPTH:
                return False
            if isinstance(item, dict):
                if not all(_is_text(key) for key in item):
                    return False
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if not _utf8(item):
                return False
        elif isinstance(item, float):
            if not math.isfinite(item):  # NaN and Infinity are not JSON
                return False
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                return False
        elif not (item is None or isinstance(item, bool)):
            return False  # bytes, msgpack ExtType, arbitrary objects
    return True


class _Check(NamedTuple):
    test: Callable[[Any], bool]
    expected: str
    nullable: bool = False


def _uint(minimum: int) -> _Check:
    expected = f"an integer from {minimum} to 2**53-1"
    return _Check(lambda v: _is_int(v, minimum), expected)


_ID = _Check(_is_id, f"a non-empty string of at most {MAX_ID_LENGTH} characters")
_TEXT = _Check(_is_text, "a string")
_COUNT = _uint(0)

# One rule per field name: a name means the same thing in every frame.
# fmt: off
_CHECKS: dict[str, _Check] = {
    "id": _ID, "device_id": _ID, "seq": _uint(1),
    "last_seq": _COUNT, "heartbeat": _COUNT, "max_frame": _COUNT,
    "sent_at": _COUNT, "expires_at": _COUNT,
    "t": _Check(lambda v: _is_int(v, -MAX_SAFE_INT), "a safe integer or null", True),
    "title": _TEXT, "body": _TEXT, "url": _TEXT, "image": _TEXT,
    "message": _TEXT, "reason": _TEXT,
    "code": _Check(lambda v: _is_text(v) and v != "", "a non-empty string"),
    "collapse_key": _Check(_is_text, "a string or null", True),
    "ref": _Check(_is_text, "a string or null", True),
    "data": _Check(_is_json_object, f"a JSON object at most {MAX_DATA_DEPTH} deep"),
    "priority": _Check(lambda v: v in ("normal", "high"), '"normal" or "high"'),
}
# fmt: on


class _Field(NamedTuple):
    name: str
    check: _Check
    default: Any  # dataclasses.MISSING when the field is required


_CLIENT = (Hello, Ack, AckUpto, Opened, Ping)
_SERVER = (Welcome, Push, Pong, Error, Resync)
# Dataclass field order is the KMPP array order.
_FIELDS: dict[type[Any], tuple[_Field, ...]] = {
    cls: tuple(
        _Field(f.name, _CHECKS[f.name], f.default) for f in dataclasses.fields(cls)
    )
    for cls in _CLIENT + _SERVER
}


def _check(cls: type[Any], field: _Field, value: Any) -> None:
    if not ((value is None and field.check.nullable) or field.check.test(value)):
        message = f"field {field.name!r} must be {field.check.expected}"
        raise ProtocolError(INVALID_FIELD, message, cls.TYPE)


def _build(cls: type[Any], values: Iterable[Any]) -> Any:
    kwargs = {}
    for field, value in zip(_FIELDS[cls], values, strict=True):
        _check(cls, field, value)
        kwargs[field.name] = value
    return cls(**kwargs)


def _values(frame: Any, skip: str = "") -> list[Any]:
    """The frame's field values in wire order, checked like the peer will."""
    if type(frame) not in _FIELDS:
        raise TypeError(f"not a protocol frame: {type(frame).__name__}")
    fields = _FIELDS[type(frame)]
    values = [getattr(frame, f.name) for f in fields]
    try:
        for field, value in zip(fields, values, strict=True):
            if field.name != skip:
                _check(type(frame), field, value)
    except ProtocolError as exc:
        # Our own frame is invalid: a bug in the caller, not in the peer.
        raise ValueError(str(exc)) from None
    return values


# Codecs.


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _packb(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # json.loads accepts NaN by default


class PushTemplate:
    """One Push encoded once; render() splices in each device's seq."""

    __slots__ = ("_prefix", "_suffix", "_encode_seq")

    def __init__(self, prefix: Any, suffix: Any, encode_seq: Callable[[int], Any]):
        self._prefix = prefix
        self._suffix = suffix
        self._encode_seq = encode_seq

    def render(self, seq: int) -> str | bytes:
        if not _is_int(seq, 0):
            raise ValueError(f"seq must be an integer from 0 to 2**53-1, not {seq!r}")
        rendered: str | bytes = self._prefix + self._encode_seq(seq) + self._suffix
        return rendered


class Codec:
    """One wire encoding. Use the JSON and KMPP instances."""

    def __init__(self, name: str, binary: bool) -> None:
        self.name = name  # the WebSocket subprotocol
        self.binary = binary  # send as bytes_data rather than text_data

    def __repr__(self) -> str:
        return f"<Codec {self.name}>"

    def encode(self, frame: Frame) -> str | bytes:
        if isinstance(frame, Push):  # one code path, so render() always matches
            return self.push_template(frame).render(frame.seq)
        return self._encode(frame, _values(frame))

    def decode_client(self, data: str | bytes) -> ClientFrame:
        frame: ClientFrame = self._decode(data, _CLIENT)
        return frame

    def decode_server(self, data: str | bytes) -> ServerFrame:
        frame: ServerFrame = self._decode(data, _SERVER)
        return frame

    def push_template(self, push: Push | Mapping[str, Any]) -> PushTemplate:
        """Accepts a Push (its seq is ignored) or its fields without seq."""
        if not isinstance(push, Push):
            push = Push(seq=0, **push)
        return self._template(push, _values(push, skip="seq"))

    def _encode(self, frame: Frame, values: list[Any]) -> str | bytes:
        raise NotImplementedError

    def _decode(self, data: str | bytes, classes: tuple[type[Any], ...]) -> Any:
        raise NotImplementedError

    def _template(self, push: Push, values: list[Any]) -> PushTemplate:
        raise NotImplementedError


class _JsonCodec(Codec):
    def _encode(self, frame: Frame, values: list[Any]) -> str:
        obj: dict[str, Any] = {"type": frame.TYPE}
        for field, value in zip(_FIELDS[type(frame)], values, strict=True):
            if not (value is None and field.default is None):  # Ping.t, Error.ref
                obj[field.name] = value
        return _dumps(obj)

    def _decode(self, data: str | bytes, classes: tuple[type[Any], ...]) -> Any:
        if not isinstance(data, str):
            raise ProtocolError(BAD_FRAME, f"{self.name} expects text frames")
        if not data or not _utf8(data):
            raise ProtocolError(BAD_FRAME, "empty or not valid UTF-8")
        try:
            obj = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..."
            raise ProtocolError(BAD_FRAME, "not valid JSON") from None
        if not isinstance(obj, dict):
            raise ProtocolError(BAD_FRAME, "a frame must be a JSON object")
        kind = obj.get("type")
        if not isinstance(kind, str):
            raise ProtocolError(INVALID_FIELD, "field 'type' must be a string")
        cls = next((c for c in classes if kind == c.TYPE), None)
        if cls is None:
            raise ProtocolError(UNKNOWN_TYPE, f"unknown frame type {kind[:32]!r}")
        values = []
        for field in _FIELDS[cls]:  # unknown extra keys are ignored on purpose
            if field.name in obj:
                values.append(obj[field.name])
            elif field.default is not dataclasses.MISSING:
                values.append(field.default)
            elif field.check.nullable:  # e.g. Push.collapse_key
                values.append(None)
            else:
                raise ProtocolError(
                    INVALID_FIELD, f"missing field {field.name!r}", kind
                )
        return _build(cls, values)

    def _template(self, push: Push, values: list[Any]) -> PushTemplate:
        # "seq" goes right after "type" so the rest can be encoded once.
        rest = {f.name: v for f, v in zip(_FIELDS[Push], values, strict=True)}
        del rest["seq"]
        return PushTemplate('{"type":"push","seq":', "," + _dumps(rest)[1:], str)


class _KmppCodec(Codec):
    def _encode(self, frame: Frame, values: list[Any]) -> bytes:
        return bytes((frame.KMPP_CODE,)) + _packb(values)

    def _decode(self, data: str | bytes, classes: tuple[type[Any], ...]) -> Any:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProtocolError(BAD_FRAME, f"{self.name} expects binary frames")
        view = memoryview(data)
        if not view:
            raise ProtocolError(BAD_FRAME, "empty frame")
        cls = next((c for c in classes if view[0] == c.KMPP_CODE), None)
        if cls is None:
            raise ProtocolError(UNKNOWN_TYPE, f"unknown frame type 0x{view[0]:02x}")
        try:  # msgpack raises a zoo of exceptions on hostile input
            values = msgpack.unpackb(view[1:], raw=False, strict_map_key=True)
        except Exception:
            raise ProtocolError(BAD_FRAME, "not valid msgpack", cls.TYPE) from None
        if not isinstance(values, list):
            raise ProtocolError(BAD_FRAME, "frame body must be an array", cls.TYPE)
        spec = _FIELDS[cls]
        if len(values) != len(spec):  # no omitted trailing fields, no extras
            names = ", ".join(f.name for f in spec)
            message = f"expected {len(spec)} fields ({names}), got {len(values)}"
            raise ProtocolError(INVALID_FIELD, message, cls.TYPE)
        return _build(cls, values)

    def _template(self, push: Push, values: list[Any]) -> PushTemplate:
        # A msgpack array is its header followed by the packed items, so the
        # packed seq (item 1) can be spliced between id and the rest.
        header = msgpack.Packer().pack_array_header(len(values))
        prefix = bytes((Push.KMPP_CODE,)) + header + _packb(values[0])
        return PushTemplate(prefix, b"".join(_packb(v) for v in values[2:]), _packb)


JSON: Codec = _JsonCodec(SUBPROTOCOL_JSON, binary=False)
KMPP: Codec = _KmppCodec(SUBPROTOCOL_KMPP, binary=True)


def negotiate(subprotocols: Iterable[str]) -> tuple[Codec, str | None]:
    """The codec for the client's offer and the subprotocol to accept."""
    for offered in subprotocols:
        if offered == SUBPROTOCOL_KMPP:
            return KMPP, offered
        if offered == SUBPROTOCOL_JSON:
            return JSON, offered
    return JSON, None  # plain clients that offer nothing get JSON


def token_from_subprotocols(subprotocols: Iterable[str]) -> str | None:
    # Browsers cannot set headers on WebSockets; a subprotocol can carry it.
    for offered in subprotocols:
        if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return offered[len(TOKEN_SUBPROTOCOL_PREFIX) :] or None
    return None
