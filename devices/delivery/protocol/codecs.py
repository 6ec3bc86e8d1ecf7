"""The JSON and KMPP codecs, push templates and subprotocol negotiation."""

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgpack

from devices.delivery.protocol.fields import (
    _CLIENT,
    _FIELDS,
    _SERVER,
    TRAILING_OPTIONAL,
    _build,
    _is_int,
    _utf8,
    _values,
)
from devices.delivery.protocol.frames import (
    BAD_FRAME,
    INBOX_TYPES,
    INVALID_FIELD,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_KMPP,
    TOKEN_SUBPROTOCOL_PREFIX,
    UNKNOWN_TYPE,
    ClientFrame,
    Frame,
    InboxFrame,
    ProtocolError,
    Push,
    Recall,
    ServerFrame,
    Update,
)

# Codecs.


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _packb(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # json.loads accepts NaN by default


class PushTemplate:
    """One inbox frame (Push, Recall, Update) encoded once; render() splices
    in each device's seq."""

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
        if isinstance(frame, Push | Recall | Update):
            # one code path, so render() always matches
            return self.push_template(frame).render(frame.seq)
        return self._encode(frame, _values(frame))

    def decode_client(self, data: str | bytes) -> ClientFrame:
        frame: ClientFrame = self._decode(data, _CLIENT)
        return frame

    def decode_server(self, data: str | bytes) -> ServerFrame:
        frame: ServerFrame = self._decode(data, _SERVER)
        return frame

    def push_template(self, push: InboxFrame | Mapping[str, Any]) -> PushTemplate:
        """Accepts an inbox frame (its seq is ignored) or its fields without
        seq; fields with a "type" of recall or update make that frame."""
        frame: InboxFrame
        if isinstance(push, Push | Recall | Update):
            frame = push
        else:
            rest = dict(push)
            frame = INBOX_TYPES[rest.pop("type", "push")](seq=0, **rest)
        return self._template(frame, _values(frame, skip="seq"))

    def _encode(self, frame: Frame, values: list[Any]) -> str | bytes:
        raise NotImplementedError

    def _decode(self, data: str | bytes, classes: tuple[type[Any], ...]) -> Any:
        raise NotImplementedError

    def _template(self, push: InboxFrame, values: list[Any]) -> PushTemplate:
        raise NotImplementedError


class _JsonCodec(Codec):
    def _encode(self, frame: Frame, values: list[Any]) -> str:
        obj: dict[str, Any] = {"type": frame.TYPE}
        for field, value in zip(_FIELDS[type(frame)], values, strict=False):
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

    def _template(self, push: InboxFrame, values: list[Any]) -> PushTemplate:
        # "seq" goes right after "type" so the rest can be encoded once.
        spec = _FIELDS[type(push)]
        rest = {f.name: v for f, v in zip(spec, values, strict=False)}
        del rest["seq"]
        prefix = '{"type":"' + push.TYPE + '","seq":'
        return PushTemplate(prefix, "," + _dumps(rest)[1:], str)


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
        if len(values) == len(spec) - 1 and spec[-1].name in TRAILING_OPTIONAL:
            values.append(None)  # a 1.2 field left out: the frame does not use it
        if len(values) != len(spec):  # no other omitted fields, no extras
            names = ", ".join(f.name for f in spec)
            message = f"expected {len(spec)} fields ({names}), got {len(values)}"
            raise ProtocolError(INVALID_FIELD, message, cls.TYPE)
        return _build(cls, values)

    def _template(self, push: InboxFrame, values: list[Any]) -> PushTemplate:
        # Every inbox frame has id then seq first. A msgpack array is its
        # header followed by the packed items, so the packed seq (item 1)
        # can be spliced between id and the rest.
        header = msgpack.Packer().pack_array_header(len(values))
        prefix = bytes((push.KMPP_CODE,)) + header + _packb(values[0])
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
