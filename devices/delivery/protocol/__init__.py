"""The device wire protocol: frames, the JSON and KMPP codecs, negotiation.

This package is the only place that builds or parses frames: `frames`
(the frame types), `fields` (their rules), `codecs` (JSON and KMPP). Import
from the package. It has no Django
imports so that SDKs and test clients can reuse it as is.
"""

from devices.delivery.protocol.codecs import (
    JSON,
    KMPP,
    Codec,
    PushTemplate,
    negotiate,
    token_from_subprotocols,
)
from devices.delivery.protocol.frames import (
    BAD_FRAME,
    INVALID_FIELD,
    MAX_DATA_DEPTH,
    MAX_ID_LENGTH,
    MAX_SAFE_INT,
    PROTOCOL_REVISION,
    PROTOCOL_VERSION,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_KMPP,
    TOKEN_SUBPROTOCOL_PREFIX,
    UNKNOWN_TYPE,
    Ack,
    AckUpto,
    ClientFrame,
    Error,
    Frame,
    Hello,
    Opened,
    Ping,
    Pong,
    ProtocolError,
    Push,
    Resync,
    ServerFrame,
    Welcome,
    error_frame,
)

__all__ = [
    "Ack",
    "AckUpto",
    "BAD_FRAME",
    "ClientFrame",
    "Codec",
    "Error",
    "Frame",
    "Hello",
    "INVALID_FIELD",
    "JSON",
    "KMPP",
    "MAX_DATA_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_SAFE_INT",
    "Opened",
    "PROTOCOL_REVISION",
    "PROTOCOL_VERSION",
    "Ping",
    "Pong",
    "ProtocolError",
    "Push",
    "PushTemplate",
    "Resync",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_KMPP",
    "ServerFrame",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "UNKNOWN_TYPE",
    "Welcome",
    "error_frame",
    "negotiate",
    "token_from_subprotocols",
]
