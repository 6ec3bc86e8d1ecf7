"""The one door out to native providers: ``native_send(deliveries=...)``.

Each delivery is one message for one device credential. Per provider (per
push service origin for Web Push) at most NATIVE_CONCURRENCY requests are
in flight and a circuit breaker fails deliveries fast while the provider
is down, so a slow provider holds its own tasks only, never the caller's
socket deliveries. Retries wait the provider's Retry-After or an
exponential backoff; a wait past NATIVE_RETRY_INLINE_MAX_SECONDS is handed
back as ``retry`` with ``next_retry_at`` for the scheduler.
Design: docs/native-push.md.
"""

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from channels.db import database_sync_to_async

from devices.native import apns, fcm, webpush
from devices.native.conf import native_setting
from devices.native.message import (
    NativeMessage,
    Outcome,
    PayloadTooLarge,
    ProviderResponse,
)
from devices.native.models import AttemptStatus, CredentialKind
from devices.native.resilience import CircuitBreaker, backoff_seconds


@dataclass(frozen=True)
class ProviderKeys:
    """An app's provider keys, decrypted (devices.native.selectors)."""

    vapid_private_pem: str = ""
    vapid_subject: str = ""
    fcm_project_id: str = ""
    fcm_account: dict[str, Any] | None = None
    apns_key: apns.ApnsKey | None = None


@dataclass(frozen=True)
class NativeDelivery:
    """One message for one credential of one device."""

    kind: str  # CredentialKind
    message: NativeMessage
    keys: ProviderKeys
    wake: str = "notification"  # WakeMode
    endpoint: str = ""
    p256dh: str = ""
    auth: str = ""
    token: str = ""
    environment: str = "production"
    delivery_id: int | None = None
    credential_id: int | None = None
    # Attempts made before this call (a retry the scheduler sends again).
    attempts: int = 0


@dataclass(frozen=True)
class NativeResult:
    delivery: NativeDelivery
    status: str  # AttemptStatus
    reason: str = ""
    status_code: int | None = None
    attempts: int = 0
    next_retry_at: datetime | None = None
    deactivate: bool = False

    @property
    def channel(self) -> str:
        return self.delivery.kind


@dataclass
class NativeDispatcher:
    """Clients, caches, limits and breakers shared by the sends of one loop."""

    _clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _limits: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    vapid: webpush.VapidSigner = field(default_factory=webpush.VapidSigner)
    fcm_tokens: fcm.FcmTokens = field(default_factory=fcm.FcmTokens)
    apns_tokens: apns.ApnsTokens = field(default_factory=apns.ApnsTokens)

    async def send(self, deliveries: list[NativeDelivery]) -> list[NativeResult]:
        return list(await asyncio.gather(*(self._deliver(d) for d in deliveries)))

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def breaker(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(
                failures=native_setting("NATIVE_BREAKER_FAILURES"),
                cooldown=native_setting("NATIVE_BREAKER_COOLDOWN_SECONDS"),
            )
        return breaker

    def _client(self, kind: str) -> httpx.AsyncClient:
        client = self._clients.get(kind)
        if client is None:
            timeout = httpx.Timeout(
                native_setting("NATIVE_TIMEOUT_SECONDS"),
                connect=native_setting("NATIVE_CONNECT_TIMEOUT_SECONDS"),
            )
            # APNs speaks HTTP/2 only: prior knowledge on cleartext (local
            # receivers), ALPN on TLS.
            apns_only = kind == CredentialKind.APNS
            client = self._clients[kind] = httpx.AsyncClient(
                http1=not apns_only, http2=True, timeout=timeout
            )
        return client

    def _limit(self, key: str) -> asyncio.Semaphore:
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = asyncio.Semaphore(
                native_setting("NATIVE_CONCURRENCY")
            )
        return limit

    async def _deliver(self, delivery: NativeDelivery) -> NativeResult:
        key = provider_key(delivery)
        breaker = self.breaker(key)
        attempts = delivery.attempts
        max_attempts = native_setting("NATIVE_MAX_ATTEMPTS")
        auth_retried = False
        try:
            payload_check(delivery)
        except PayloadTooLarge as exc:
            return NativeResult(
                delivery, AttemptStatus.FAILED, str(exc), None, attempts
            )
        while True:
            if not breaker.allow():
                return _deferred(delivery, attempts, "circuit open", breaker.retry_in())
            attempts += 1
            async with self._limit(key):
                response = await self._call(delivery)
            breaker.record(failed=response.provider_failure)
            if response.outcome is Outcome.AUTH_EXPIRED and not auth_retried:
                # Our token expired or was revoked: mint one and try again.
                self._forget_auth(delivery)
                auth_retried = True
                attempts -= 1
                continue
            if response.outcome is not Outcome.RETRY:
                return _final(delivery, response, attempts)
            if attempts >= max_attempts:
                return NativeResult(
                    delivery,
                    AttemptStatus.FAILED,
                    f"gave up after {attempts} attempts: {response.reason}",
                    response.status_code,
                    attempts,
                )
            wait = backoff_seconds(
                attempts,
                base=native_setting("NATIVE_BACKOFF_SECONDS"),
                retry_after=response.retry_after,
            )
            if wait > native_setting("NATIVE_RETRY_INLINE_MAX_SECONDS"):
                return _deferred(delivery, attempts, response.reason, wait, response)
            await asyncio.sleep(wait)

    async def _call(self, delivery: NativeDelivery) -> ProviderResponse:
        try:
            if delivery.kind == CredentialKind.WEBPUSH:
                return await self._webpush(delivery)
            if delivery.kind == CredentialKind.FCM:
                return await self._fcm(delivery)
            return await self._apns(delivery)
        except httpx.TimeoutException:
            return ProviderResponse(Outcome.RETRY, "timeout")
        except httpx.TransportError as exc:
            return ProviderResponse(Outcome.RETRY, f"transport: {type(exc).__name__}")
        except fcm.FcmAuthError as exc:
            return ProviderResponse(Outcome.FAILED, str(exc))

    async def _webpush(self, delivery: NativeDelivery) -> ProviderResponse:
        authorization = self.vapid.header(
            private_pem=delivery.keys.vapid_private_pem,
            subject=delivery.keys.vapid_subject or native_setting("VAPID_SUBJECT"),
            audience=webpush.origin_of(delivery.endpoint),
        )
        subscription = webpush.Subscription(
            delivery.endpoint, delivery.p256dh, delivery.auth
        )
        return await webpush.webpush_send(
            self._client(delivery.kind),
            subscription=subscription,
            message=delivery.message,
            authorization=authorization,
        )

    async def _fcm(self, delivery: NativeDelivery) -> ProviderResponse:
        account = delivery.keys.fcm_account
        if account is None:
            return ProviderResponse(Outcome.FAILED, "FCM is not configured")
        message = fcm.fcm_message(
            delivery.message, token=delivery.token, wake=delivery.wake
        )
        client = self._client(delivery.kind)
        token = await self.fcm_tokens.token(
            client, account=account, token_url=native_setting("FCM_TOKEN_URL")
        )
        return await fcm.fcm_send(
            client,
            base_url=native_setting("FCM_BASE_URL"),
            project_id=delivery.keys.fcm_project_id or account["project_id"],
            access_token=token,
            message=message,
        )

    async def _apns(self, delivery: NativeDelivery) -> ProviderResponse:
        key = delivery.keys.apns_key
        if key is None:
            return ProviderResponse(Outcome.FAILED, "APNs is not configured")
        payload = apns.apns_payload(delivery.message, wake=delivery.wake)
        headers = apns.apns_headers(
            delivery.message,
            wake=delivery.wake,
            key=key,
            jwt=self.apns_tokens.token(key),
            now=time.time(),
        )
        return await apns.apns_send(
            self._client(delivery.kind),
            base_url=apns_base_url(delivery.environment),
            device_token=delivery.token,
            headers=headers,
            payload=payload,
        )

    def _forget_auth(self, delivery: NativeDelivery) -> None:
        if delivery.kind == CredentialKind.FCM and delivery.keys.fcm_account:
            self.fcm_tokens.forget(delivery.keys.fcm_account)
        elif delivery.kind == CredentialKind.APNS and delivery.keys.apns_key:
            self.apns_tokens.forget(delivery.keys.apns_key)


def payload_check(delivery: NativeDelivery) -> None:
    """Raise PayloadTooLarge before any request: the limit never changes."""
    if delivery.kind == CredentialKind.WEBPUSH:
        webpush.webpush_body(delivery.message)
    elif delivery.kind == CredentialKind.FCM:
        fcm.fcm_message(delivery.message, token=delivery.token, wake=delivery.wake)
    else:
        apns.apns_payload(delivery.message, wake=delivery.wake)


def apns_base_url(environment: str) -> str:
    if environment == "sandbox":
        return native_setting("APNS_BASE_URL_SANDBOX")
    return native_setting("APNS_BASE_URL_PRODUCTION")


def provider_key(delivery: NativeDelivery) -> str:
    """What one breaker and one concurrency limit cover."""
    if delivery.kind == CredentialKind.WEBPUSH:
        return f"webpush {webpush.origin_of(delivery.endpoint)}"
    if delivery.kind == CredentialKind.APNS:
        return f"apns {apns_base_url(delivery.environment)}"
    return f"fcm {native_setting('FCM_BASE_URL')}"


def _final(
    delivery: NativeDelivery, response: ProviderResponse, attempts: int
) -> NativeResult:
    if response.outcome is Outcome.ACCEPTED:
        return NativeResult(
            delivery, AttemptStatus.ACCEPTED, "", response.status_code, attempts
        )
    return NativeResult(
        delivery,
        AttemptStatus.FAILED,
        response.reason,
        response.status_code,
        attempts,
        deactivate=response.outcome is Outcome.INVALID_CREDENTIAL,
    )


def _deferred(
    delivery: NativeDelivery,
    attempts: int,
    reason: str,
    wait: float,
    response: ProviderResponse | None = None,
) -> NativeResult:
    return NativeResult(
        delivery,
        AttemptStatus.RETRY,
        reason,
        response.status_code if response else None,
        attempts,
        next_retry_at=datetime.now(UTC) + timedelta(seconds=wait),
    )


# One dispatcher per event loop: its clients, locks and semaphores belong
# to that loop.
_dispatchers: dict[asyncio.AbstractEventLoop, NativeDispatcher] = {}


def dispatcher() -> NativeDispatcher:
    loop = asyncio.get_running_loop()
    found = _dispatchers.get(loop)
    if found is None:
        found = _dispatchers[loop] = NativeDispatcher()
    return found


async def dispatcher_close() -> None:
    found = _dispatchers.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()


async def native_send(
    *, deliveries: list[NativeDelivery], record: bool = True
) -> list[NativeResult]:
    """Send each delivery through its provider; with ``record``, store each
    result as the delivery's NativeAttempt and deactivate dead credentials."""
    results = await dispatcher().send(deliveries)
    if record:
        from devices.native import services

        await database_sync_to_async(services.native_results_record)(results=results)
    return results
