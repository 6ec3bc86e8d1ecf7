"""The wire protocol for the Python SDK: devices/protocol.py, re-exported.

The SDK ships in the same repository and the same install as the server, so
it uses the server's reference codec as is: one source of truth for the
frames, JSON and KMPP (docs/protocol.md). That module has no Django imports.
"""

from devices.delivery.protocol import (
    JSON,
    KMPP,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_KMPP,
    TOKEN_SUBPROTOCOL_PREFIX,
    Ack,
    AckUpto,
    Codec,
    Error,
    Hello,
    Opened,
    Ping,
    Pong,
    ProtocolError,
    Push,
    Recall,
    Resync,
    ServerFrame,
    Update,
    Welcome,
)

__all__ = [
    "JSON",
    "KMPP",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_KMPP",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "Ack",
    "AckUpto",
    "Codec",
    "Error",
    "Hello",
    "Opened",
    "Ping",
    "Pong",
    "ProtocolError",
    "Push",
    "Recall",
    "Resync",
    "Update",
    "ServerFrame",
    "Welcome",
    "codec_for",
]


def codec_for(encoding: str) -> Codec:
    """The codec for "json" / "kpns.json.v1" or "kmpp" / "kmpp.v1"."""
    if encoding in ("json", SUBPROTOCOL_JSON):
        return JSON
    if encoding in ("kmpp", SUBPROTOCOL_KMPP):
        return KMPP
    raise ValueError(f"unknown encoding {encoding!r}: use 'json' or 'kmpp'")
