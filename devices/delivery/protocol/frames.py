"""The frames of the device protocol and its error (docs/protocol.md)."""

from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

PROTOCOL_VERSION = 1
# 1.1 added ack_upto (cumulative acknowledgement); 1.0 clients are unaffected.
# 1.2 added the optional push field enc (end-to-end encrypted payload), sent
# only on encrypted pushes: plain pushes are byte for byte as in 1.1.
# 1.3 added the recall and update frames (inbox frames with their own seq,
# acked like pushes); clients that do not know them ignore them.
PROTOCOL_REVISION = "1.3"
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
    # Protocol 1.2: {kid, epk, iv, ct} of an end-to-end encrypted push
    # (docs/e2ee.md); absent from the wire when None (a trailing field).
    enc: dict[str, str] | None = None


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


@dataclass(frozen=True, slots=True)
class Recall:
    """Protocol 1.3: remove the push `id`; this frame's own inbox seq is `seq`."""

    TYPE: ClassVar[str] = "recall"
    KMPP_CODE: ClassVar[int] = 0x16
    id: str  # the recalled push's id
    seq: int


@dataclass(frozen=True, slots=True)
class Update:
    """Protocol 1.3: replace the content of the push `id` in place."""

    TYPE: ClassVar[str] = "update"
    KMPP_CODE: ClassVar[int] = 0x17
    id: str  # the updated push's id
    seq: int
    title: str
    body: str
    url: str
    image: str
    data: dict[str, Any]


# Frames that take a seq in a device's inbox: the session writes them in
# seq order and the device acks each one (docs/protocol.md).
InboxFrame: TypeAlias = Push | Recall | Update
INBOX_TYPES: dict[str, type[Any]] = {c.TYPE: c for c in (Push, Recall, Update)}


def inbox_frame(seq: int, fields: dict[str, Any]) -> InboxFrame:
    """The frame for one delivery: a push, or the recall or update that the
    fields' "type" names (devices.delivery.messages.push_fields)."""
    rest = dict(fields)
    cls = INBOX_TYPES[rest.pop("type", "push")]
    frame: InboxFrame = cls(seq=seq, **rest)
    return frame


ClientFrame: TypeAlias = Hello | Ack | AckUpto | Opened | Ping
ServerFrame: TypeAlias = Welcome | Push | Pong | Error | Resync | Recall | Update
Frame: TypeAlias = ClientFrame | ServerFrame


def error_frame(exc: ProtocolError) -> Error:
    return Error(code=exc.code, message=exc.message, ref=exc.ref)
