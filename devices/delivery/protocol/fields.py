"""Field rules shared by both codecs and by encode: one rule per field name."""

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from devices.delivery.protocol.frames import (
    INVALID_FIELD,
    MAX_DATA_DEPTH,
    MAX_ID_LENGTH,
    MAX_SAFE_INT,
    Ack,
    AckUpto,
    Error,
    Hello,
    Opened,
    Ping,
    Pong,
    ProtocolError,
    Push,
    Recall,
    Resync,
    Update,
    Welcome,
)

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


_ENC_KEYS = frozenset({"kid", "epk", "iv", "ct"})
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _is_enc(value: Any) -> bool:
    # Opaque to the server, but of a fixed shape: four base64url strings.
    return (
        isinstance(value, dict)
        and value.keys() == _ENC_KEYS
        and all(isinstance(v, str) and v and set(v) <= _B64URL for v in value.values())
    )


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
    "enc": _Check(_is_enc, "an object of base64url kid, epk, iv and ct", True),
}
# Fields added after 1.0 at the end of a frame: left out of the wire when
# null (JSON key absent, KMPP array one shorter), so older peers never see
# them on frames that do not use them.
TRAILING_OPTIONAL = frozenset({"enc"})
# fmt: on


class _Field(NamedTuple):
    name: str
    check: _Check
    default: Any  # dataclasses.MISSING when the field is required


_CLIENT = (Hello, Ack, AckUpto, Opened, Ping)
_SERVER = (Welcome, Push, Pong, Error, Resync, Recall, Update)
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
    """The frame's field values in wire order, checked like the peer will;
    a trailing optional field that is null is left out."""
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
    if values and values[-1] is None and fields[-1].name in TRAILING_OPTIONAL:
        values.pop()
    return values
