"""Secrets for devices and apps: generated here, stored only as hashes."""

import hashlib
import secrets


def new_device_token() -> str:
    # URL-safe base64 uses only RFC 7230 token characters, so the token can
    # travel as a WebSocket subprotocol ("kpns.token.<token>").
    return secrets.token_urlsafe(32)


def new_client_key() -> str:
    return "ck_" + secrets.token_urlsafe(18)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_prefix(token: str) -> str:
    return token[:8]
