"""APNs: HTTP/2 requests with token-based auth, a provider JWT (ES256 with
the app's .p8 key) cached about 50 minutes (Apple refuses one older than an
hour, and one minted more often than every 20 minutes)."""

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from devices.native.message import (
    NativeMessage,
    Outcome,
    ProviderResponse,
    app_payload,
    checked,
    classify_status,
    compact_json,
    retry_after_seconds,
)
from devices.native.webpush import b64url_encode

MAX_PAYLOAD_BYTES = 4096
JWT_REFRESH_SECONDS = 50 * 60
_INVALID_TOKEN_REASONS = {"BadDeviceToken", "Unregistered"}
_AUTH_REASONS = {"ExpiredProviderToken", "InvalidProviderToken"}


@dataclass(frozen=True)
class ApnsKey:
    key_pem: str
    key_id: str
    team_id: str
    bundle_id: str


def es256_jwt(header: dict[str, Any], claims: dict[str, Any], key_pem: str) -> str:
    """A compact JWS with ES256 (RFC 7518 §3.4: r and s, 32 bytes each)."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signing_input = ".".join(
        b64url_encode(compact_json(part)) for part in (header, claims)
    ).encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode()}.{b64url_encode(signature)}"


class ApnsTokens:
    """Provider JWTs per (team, key id)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def forget(self, key: ApnsKey) -> None:
        self._tokens.pop((key.team_id, key.key_id), None)

    def token(self, key: ApnsKey) -> str:
        cached = self._tokens.get((key.team_id, key.key_id))
        now = time.time()
        if cached and now - cached[1] < JWT_REFRESH_SECONDS:
            return cached[0]
        token = es256_jwt(
            {"alg": "ES256", "kid": key.key_id},
            {"iss": key.team_id, "iat": int(now)},
            key.key_pem,
        )
        self._tokens[(key.team_id, key.key_id)] = (token, now)
        return token


def apns_payload(message: NativeMessage, *, wake: str) -> bytes:
    """A visible alert, or a background wake-up (content-available)."""
    if wake == "notification":
        alert = {"title": message.title}
        if message.body:
            alert["body"] = message.body
        aps: dict[str, Any] = {"alert": alert}
        if message.image:
            # A notification service extension downloads the image.
            aps["mutable-content"] = 1
    else:
        aps = {"content-available": 1}
    payload = {"aps": aps, "kpns": app_payload(message)}
    return checked("apns", compact_json(payload), MAX_PAYLOAD_BYTES)


def apns_headers(
    message: NativeMessage, *, wake: str, key: ApnsKey, jwt: str, now: float
) -> dict[str, str]:
    alert = wake == "notification"
    headers = {
        "authorization": f"bearer {jwt}",
        "apns-id": message.id,
        "apns-topic": key.bundle_id,
        "apns-push-type": "alert" if alert else "background",
        # Background pushes must be 5; 10 delivers an alert at once.
        "apns-priority": "10" if alert and message.priority == "high" else "5",
        # 0: deliver once or never (a TTL of 0 means no store-and-forward).
        "apns-expiration": str(int(now) + message.ttl_seconds)
        if message.ttl_seconds > 0
        else "0",
    }
    if message.collapse_key:
        headers["apns-collapse-id"] = message.collapse_key
    return headers


def _reason(response: httpx.Response) -> str:
    try:
        return str(json.loads(response.content).get("reason", ""))
    except ValueError:
        return ""


async def apns_send(
    client: httpx.AsyncClient,
    *,
    base_url: str,
    device_token: str,
    headers: dict[str, str],
    payload: bytes,
) -> ProviderResponse:
    response = await client.post(
        f"{base_url}/3/device/{device_token}", content=payload, headers=headers
    )
    status = response.status_code
    if status == 200:
        return ProviderResponse(Outcome.ACCEPTED, status_code=200)
    reason = _reason(response)
    if reason in _INVALID_TOKEN_REASONS or status == 410:
        return ProviderResponse(Outcome.INVALID_CREDENTIAL, reason, status)
    if reason in _AUTH_REASONS:
        return ProviderResponse(Outcome.AUTH_EXPIRED, reason, status)
    outcome = classify_status(status, response.headers.get("Retry-After"))
    return ProviderResponse(
        outcome.outcome,
        reason or outcome.reason,
        status,
        retry_after_seconds(response.headers.get("Retry-After")),
    )
