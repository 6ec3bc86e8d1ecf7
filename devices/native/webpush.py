"""Web Push: RFC 8030 delivery, RFC 8291 aes128gcm payloads, RFC 8292 VAPID.

The endpoint comes with the browser's subscription; the app's VAPID key
pair signs a JWT per push service origin.
"""

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import http_ece
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from devices.native.message import (
    NativeMessage,
    Outcome,
    ProviderResponse,
    app_payload,
    checked,
    classify_status,
    compact_json,
)

# Push services must accept 4,096 bytes of encrypted body (RFC 8030 §7.2);
# aes128gcm adds 86 bytes of header (salt, rs, 65-byte key), a 16-byte tag
# and a 1-byte delimiter.
MAX_BODY_BYTES = 4096
MAX_PLAINTEXT_BYTES = MAX_BODY_BYTES - 86 - 16 - 1
# A JWT lives 12 h (RFC 8292 allows up to 24 h) and is reused until 1 h is left.
VAPID_LIFETIME_SECONDS = 12 * 3600
VAPID_REFRESH_SECONDS = 3600
_TOPIC_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def vapid_keys_generate() -> tuple[str, str]:
    """A new P-256 key pair: (public key as applicationServerKey, private PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return b64url_encode(public), pem.decode()


def origin_of(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def topic_of(collapse_key: str) -> str:
    """RFC 8030 §5.4: at most 32 characters of the URL-safe base64 alphabet;
    any other collapse key is hashed into one, the same key every time."""
    if _TOPIC_RE.match(collapse_key):
        return collapse_key
    return b64url_encode(hashlib.sha256(collapse_key.encode()).digest())[:32]


class VapidSigner:
    """VAPID ``Authorization`` headers, one JWT per (key, push service) cached."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._keys: dict[str, Vapid02] = {}

    def header(self, *, private_pem: str, subject: str, audience: str) -> str:
        cached = self._cache.get((private_pem, audience))
        now = time.time()
        if cached and cached[1] - now > VAPID_REFRESH_SECONDS:
            return cached[0]
        vapid = self._keys.get(private_pem)
        if vapid is None:
            vapid = self._keys[private_pem] = Vapid02.from_pem(private_pem.encode())
        expires = int(now) + VAPID_LIFETIME_SECONDS
        claims = {"aud": audience, "exp": expires, "sub": subject}
        value = vapid.sign(claims)["Authorization"]
        self._cache[(private_pem, audience)] = (value, expires)
        return value


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str


def webpush_body(message: NativeMessage) -> bytes:
    """The plaintext: the message as the SDK's service worker reads it."""
    return checked("webpush", compact_json(app_payload(message)), MAX_PLAINTEXT_BYTES)


def encrypt(plaintext: bytes, subscription: Subscription) -> bytes:
    """aes128gcm (RFC 8291) with a fresh sender key per message."""
    return http_ece.encrypt(
        plaintext,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=b64url_decode(subscription.p256dh),
        auth_secret=b64url_decode(subscription.auth),
        version="aes128gcm",
    )


def webpush_headers(message: NativeMessage, authorization: str) -> dict[str, str]:
    headers = {
        "Authorization": authorization,
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(max(0, message.ttl_seconds)),
        "Urgency": "high" if message.priority == "high" else "normal",
    }
    if message.collapse_key:
        headers["Topic"] = topic_of(message.collapse_key)
    return headers


async def webpush_send(
    client: httpx.AsyncClient,
    *,
    subscription: Subscription,
    message: NativeMessage,
    authorization: str,
) -> ProviderResponse:
    body = encrypt(webpush_body(message), subscription)
    response = await client.post(
        subscription.endpoint,
        content=body,
        headers=webpush_headers(message, authorization),
    )
    if response.status_code in (404, 410):
        # The subscription expired or was unsubscribed (RFC 8030 §7.3).
        return ProviderResponse(
            Outcome.INVALID_CREDENTIAL,
            f"subscription gone (HTTP {response.status_code})",
            response.status_code,
        )
    return classify_status(response.status_code, response.headers.get("Retry-After"))
