"""What every provider carries: one message for one device, under the same
id and seq as on the socket, and the outcome a provider answered."""

import enum
import json
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any


class PayloadTooLarge(ValueError):
    """The encoded payload is over the provider's limit; never truncated."""

    def __init__(self, channel: str, size: int, limit: int) -> None:
        super().__init__(f"{channel} payload is {size} bytes, over its {limit}.")
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class NativeMessage:
    id: str
    seq: int
    title: str
    body: str = ""
    url: str = ""
    image: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    collapse_key: str = ""
    ttl_seconds: int = 0
    priority: str = "normal"  # devices.models.Priority


def app_payload(message: NativeMessage) -> dict[str, Any]:
    """The fields an SDK reads, as a push frame carries them (docs/protocol.md)."""
    payload: dict[str, Any] = {"id": message.id, "seq": message.seq}
    for name in ("title", "body", "url", "image"):
        if getattr(message, name):
            payload[name] = getattr(message, name)
    if message.data:
        payload["data"] = message.data
    return payload


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def checked(channel: str, encoded: bytes, limit: int) -> bytes:
    if len(encoded) > limit:
        raise PayloadTooLarge(channel, len(encoded), limit)
    return encoded


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    # The credential is gone for good (404/410, UNREGISTERED, BadDeviceToken).
    INVALID_CREDENTIAL = "invalid_credential"
    # Worth another try: 429, 5xx, timeouts, refused connections.
    RETRY = "retry"
    # Our provider token was refused: mint a new one and try again once.
    AUTH_EXPIRED = "auth_expired"
    FAILED = "failed"


@dataclass(frozen=True)
class ProviderResponse:
    outcome: Outcome
    reason: str = ""
    status_code: int | None = None
    retry_after: float | None = None

    @property
    def provider_failure(self) -> bool:
        """Counts toward the circuit breaker: the provider, not the request,
        is at fault (a 429 is honoured through Retry-After instead)."""
        return self.outcome is Outcome.RETRY and (
            self.status_code is None or self.status_code >= 500
        )


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (RFC 9110 §10.2.3: delta-seconds or a date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify_status(status_code: int, retry_after: str | None) -> ProviderResponse:
    """The outcome every provider shares for a status without a reason body."""
    if 200 <= status_code < 300:
        return ProviderResponse(Outcome.ACCEPTED, status_code=status_code)
    delay = retry_after_seconds(retry_after)
    if status_code == 429 or status_code >= 500:
        return ProviderResponse(
            Outcome.RETRY, f"HTTP {status_code}", status_code, delay
        )
    return ProviderResponse(Outcome.FAILED, f"HTTP {status_code}", status_code)
