"""FCM HTTP v1: a service account's OAuth2 token (RFC 7523 JWT bearer grant,
signed by google-auth), cached until shortly before it expires, and
``projects/{id}/messages:send`` with the message's Android options."""

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from google.auth import crypt, jwt

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

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# FCM refuses a message whose payload (data and notification) passes 4,096
# bytes; FCM keeps undelivered messages at most 28 days.
MAX_PAYLOAD_BYTES = 4096
MAX_TTL_SECONDS = 28 * 86400
# A token lives an hour; a new one is minted 5 minutes before that.
TOKEN_MARGIN_SECONDS = 300
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_INVALID_TOKEN_CODES = {"UNREGISTERED"}


class FcmTokens:
    """OAuth2 access tokens per service account, minted once at a time."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self, account: dict[str, Any]) -> None:
        self._tokens.pop(account["client_email"], None)

    async def token(
        self, client: httpx.AsyncClient, *, account: dict[str, Any], token_url: str
    ) -> str:
        email = account["client_email"]
        lock = self._locks.setdefault(email, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(email)
            if cached and cached[1] > time.time():
                return cached[0]
            token, lifetime = await _token_exchange(client, account, token_url)
            self._tokens[email] = (token, time.time() + lifetime - TOKEN_MARGIN_SECONDS)
            return token


async def _token_exchange(
    client: httpx.AsyncClient, account: dict[str, Any], token_url: str
) -> tuple[str, float]:
    now = int(time.time())
    assertion = jwt.encode(
        crypt.RSASigner.from_service_account_info(account),
        {
            "iss": account["client_email"],
            "scope": SCOPE,
            "aud": token_url,
            "iat": now,
            "exp": now + 3600,
        },
    )
    response = await client.post(
        token_url, data={"grant_type": GRANT_TYPE, "assertion": assertion.decode()}
    )
    if response.status_code != 200:
        raise FcmAuthError(f"token exchange answered HTTP {response.status_code}")
    body = response.json()
    return body["access_token"], float(body.get("expires_in", 3600))


class FcmAuthError(Exception):
    """The service account was refused: nothing can be sent with it."""


@dataclass(frozen=True)
class FcmAccount:
    project_id: str
    info: dict[str, Any]


def fcm_message(message: NativeMessage, *, token: str, wake: str) -> dict[str, Any]:
    """The v1 ``message``: a notification or a data-only wake-up, whose
    ``data`` values are strings (FCM's rule) carrying the KPNS id and seq."""
    payload = app_payload(message)
    data = {"kpns": json.dumps(payload, separators=(",", ":"))}
    body: dict[str, Any] = {"data": data}
    if wake == "notification":
        notification = {"title": message.title}
        if message.body:
            notification["body"] = message.body
        if message.image:
            notification["image"] = message.image
        body["notification"] = notification
    checked("fcm", compact_json(body), MAX_PAYLOAD_BYTES)
    android: dict[str, Any] = {
        "ttl": f"{min(max(0, message.ttl_seconds), MAX_TTL_SECONDS)}s",
        "priority": "HIGH" if message.priority == "high" else "NORMAL",
    }
    if message.collapse_key:
        android["collapse_key"] = message.collapse_key
    return {"token": token, **body, "android": android}


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return ""
    for detail in error.get("details") or []:
        if detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status", ""))


async def fcm_send(
    client: httpx.AsyncClient,
    *,
    base_url: str,
    project_id: str,
    access_token: str,
    message: dict[str, Any],
) -> ProviderResponse:
    response = await client.post(
        f"{base_url}/v1/projects/{project_id}/messages:send",
        json={"message": message},
        headers={"Authorization": f"Bearer {access_token}"},
    )
    if response.status_code == 200:
        return ProviderResponse(Outcome.ACCEPTED, status_code=200)
    code = _error_code(response)
    status = response.status_code
    if code in _INVALID_TOKEN_CODES or (status == 404 and code == "NOT_FOUND"):
        return ProviderResponse(Outcome.INVALID_CREDENTIAL, code, status)
    if status == 401:
        return ProviderResponse(Outcome.AUTH_EXPIRED, code or "HTTP 401", status)
    outcome = classify_status(status, response.headers.get("Retry-After"))
    return ProviderResponse(
        outcome.outcome,
        code or outcome.reason,
        status,
        retry_after_seconds(response.headers.get("Retry-After")),
    )
