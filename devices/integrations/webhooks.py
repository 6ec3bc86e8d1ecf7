"""Webhooks: signed event calls to integrators' URLs, through an outbox.

An event writes one WebhookDelivery row per subscribed endpoint in the same
transaction as the change it reports (so a rolled-back change reports
nothing and a committed one is never lost). The scheduler process sends due
rows (``WebhookDispatcher``) in a thread of its own, so a slow or dead
receiver delays neither pushes nor campaign chunks. Failed calls are retried
with exponential backoff for a bounded time; every call is signed:

    KPNS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

Delivery is at least once: receivers deduplicate on ``KPNS-Event-Id``.
Calls reach public addresses only, checked when an endpoint is created and
again, after DNS, before every call (devices/egress.py).
"""

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import uuid4

import httpx
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from devices.conf import kpns_setting
from devices.integrations import egress
from devices.models import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - a label, not a secret
SIGNATURE_HEADER = "KPNS-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_ENDPOINTS_PER_APP = 20
USER_AGENT = "KPNS-Webhooks/1"
_url_validator = URLValidator(schemes=["http", "https"])


# Endpoints ------------------------------------------------------------------


def webhook_endpoint_validate(
    *, app: Any, url: str, events: Iterable[str], description: str = ""
) -> None:
    """The rules for an endpoint (the API and the admin form both call this)."""
    events = list(events)
    errors: dict[str, list[str]] = {}
    try:
        _url_validator(url)
    except ValidationError:
        errors["url"] = ["An http:// or https:// URL."]
    else:
        refusal = egress.url_refusal(url)
        if refusal:
            errors["url"] = [
                f"Refused: {refusal}. Webhooks call public addresses only "
                "(KPNS_WEBHOOK_ALLOWED_NETWORKS lets on-premise receivers in)."
            ]
    if len(url) > 1000:
        errors["url"] = ["At most 1000 characters."]
    unknown = sorted(set(events) - set(WebhookEvent.values))
    if unknown:
        errors["events"] = [
            f"Unknown event {unknown[0]!r}; one of {', '.join(WebhookEvent.values)}."
        ]
    elif not events:
        errors["events"] = ["Choose at least one event."]
    if len(description) > 200:
        errors["description"] = ["At most 200 characters."]
    if WebhookEndpoint.objects.filter(app=app).count() >= MAX_ENDPOINTS_PER_APP:
        errors["url"] = [f"At most {MAX_ENDPOINTS_PER_APP} endpoints per app."]
    if errors:
        raise ValidationError(errors)


def webhook_endpoint_create(
    *, app: Any, url: str, events: Iterable[str], description: str = ""
) -> WebhookEndpoint:
    """Subscribe a URL to events; the returned endpoint's secret signs calls."""
    events = list(events)
    webhook_endpoint_validate(app=app, url=url, events=events, description=description)
    return WebhookEndpoint.objects.create(
        app=app,
        url=url,
        events=[e for e in WebhookEvent.values if e in events],
        description=description,
        secret=SECRET_PREFIX + secrets.token_urlsafe(24),
    )


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint and its undelivered calls."""
    endpoint.delete()


# Signing ----------------------------------------------------------------------


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def signature_verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does (docs/api.md has the same code for integrators)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature_header(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# Events -----------------------------------------------------------------------


def subscriptions(events: Iterable[str]) -> dict[int, set[str]]:
    """App id -> which of these events it has an active endpoint for.

    One small query (endpoints are few), kept for
    KPNS_WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS: every receipt flush of every
    node asked it (20 times a second, 18% of a receipt write's time,
    docs/benchmarks.md). An endpoint saved or deleted in this process is
    seen at once, in others within that time; which endpoints get the
    events is read again when they are written (events_emit).
    """
    wanted = set(events)
    found: dict[int, set[str]] = defaultdict(set)
    for app_id, subscribed in _active_endpoints():
        found[app_id] |= wanted & set(subscribed or [])
    return {app_id: names for app_id, names in found.items() if names}


_endpoints_lock = threading.Lock()
_endpoints: tuple[float, list[tuple[int, list[str]]]] | None = None


def _active_endpoints() -> list[tuple[int, list[str]]]:
    global _endpoints
    ttl = float(kpns_setting("WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS"))
    now = time.monotonic()
    cached = _endpoints
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    rows = list(
        WebhookEndpoint.objects.filter(is_active=True).values_list("app_id", "events")
    )
    with _endpoints_lock:
        _endpoints = (now, rows)
    return rows


def subscriptions_forget() -> None:
    """Read the subscriptions again next time (an endpoint changed here)."""
    global _endpoints
    with _endpoints_lock:
        _endpoints = None


def event_emit(
    *,
    app_id: int,
    event: str,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
    now: datetime | None = None,
) -> int:
    """Queue one event for the app's subscribed endpoints (in the caller's
    transaction). ``data`` may be a callable, built only if someone listens."""
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(app_id=app_id, is_active=True)
        if event in endpoint.events
    ]
    if not endpoints:
        return 0
    payload_data = data() if callable(data) else data
    return events_emit(
        app_id=app_id,
        event=event,
        items=[payload_data],
        endpoints=endpoints,
        now=now,
    )


def events_emit(
    *,
    app_id: int,
    event: str,
    items: list[dict[str, Any]],
    endpoints: list[WebhookEndpoint] | None = None,
    now: datetime | None = None,
) -> int:
    """Queue many events of one type for one app. Returns outbox rows written."""
    if endpoints is None:
        endpoints = [
            endpoint
            for endpoint in WebhookEndpoint.objects.filter(
                app_id=app_id, is_active=True
            )
            if event in endpoint.events
        ]
    if not endpoints or not items:
        return 0
    now = now or timezone.now()
    rows = []
    for data in items:
        event_id = uuid4()
        payload = {
            "id": str(event_id),
            "type": event,
            "created_at": now.isoformat(),
            "app_id": app_id,
            "data": data,
        }
        rows += [
            WebhookDelivery(
                endpoint=endpoint,
                event_id=event_id,
                event=event,
                payload=payload,
                next_attempt_at=now,
                created_at=now,
            )
            for endpoint in endpoints
        ]
    WebhookDelivery.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def delivery_events(
    rows: Iterable[tuple[Any, ...]],
    event: str,
    at: datetime,
    *,
    channel: str = "socket",
) -> int:
    """message.delivered / message.opened for delivery rows
    (app id, message id, device id, alias, seq), with the channel that
    carried the message (socket, webpush, fcm, apns); message.recalled /
    message.updated for rows that add the control message's id."""
    by_app: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for app_id, message_id, device_id, alias, seq, *control in rows:
        item = {
            "message_id": str(message_id),
            "device_id": str(device_id),
            "alias": alias,
            "seq": seq,
            "channel": channel,
            "at": at.isoformat(),
        }
        if control:
            item["control_id"] = str(control[0])
        by_app[app_id].append(item)
    return sum(
        events_emit(app_id=app_id, event=event, items=items, now=at)
        for app_id, items in by_app.items()
    )


# Dispatch ---------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """Delay after the n-th failed call: BACKOFF, 2x, 4x, ..."""
    return float(kpns_setting("WEBHOOK_BACKOFF_SECONDS")) * 2 ** max(0, attempts - 1)


def dispatch_due(
    *, now: datetime | None = None, client: httpx.Client | None = None
) -> int:
    """Send the due calls (at most WEBHOOK_BATCH). Returns calls attempted.

    Rows are claimed in a short transaction (SKIP LOCKED, so several
    schedulers share them) by moving next_attempt_at past a lease; the calls
    are made outside any transaction; a dispatcher that dies mid-call leaves
    them to be retried when the lease ends.
    """
    now = now or timezone.now()
    timeout = float(kpns_setting("WEBHOOK_TIMEOUT_SECONDS"))
    lease = timedelta(seconds=2 * timeout + 30)
    with transaction.atomic():
        rows = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=now)
            .select_related("endpoint")
            .order_by("next_attempt_at")[: kpns_setting("WEBHOOK_BATCH")]
        )
        if not rows:
            return 0
        # An endpoint switched off in the admin gets no more calls.
        disabled = [r.pk for r in rows if not r.endpoint.is_active]
        if disabled:
            WebhookDelivery.objects.filter(pk__in=disabled).update(
                status=WebhookDeliveryStatus.FAILED, last_error="Endpoint disabled."
            )
            rows = [r for r in rows if r.endpoint.is_active]
            if not rows:
                return 0
        WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows]).update(
            next_attempt_at=now + lease, last_attempt_at=now
        )
    # One client per receiving host: calls connect to the address checked
    # for their host, so a pooled connection must never serve another host.
    origins = {_origin(row) for row in rows}
    clients = {origin: client or _client(timeout) for origin in origins}
    try:
        workers = min(len(rows), int(kpns_setting("WEBHOOK_CONCURRENCY")))
        with ThreadPoolExecutor(workers, thread_name_prefix="kpns-webhook") as pool:
            outcomes = list(
                pool.map(lambda row: _call(clients[_origin(row)], row, now), rows)
            )
    finally:
        if client is None:
            for own in clients.values():
                own.close()
    for row, outcome in zip(rows, outcomes, strict=True):
        _record(row, outcome, now)
    return len(rows)


def deliveries_prune(*, now: datetime | None = None) -> int:
    """Forget finished calls older than WEBHOOK_RETENTION_SECONDS (bounded)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=kpns_setting("WEBHOOK_RETENTION_SECONDS"))
    ids = list(
        WebhookDelivery.objects.filter(created_at__lt=cutoff)
        .exclude(status=WebhookDeliveryStatus.PENDING)
        .values_list("pk", flat=True)[:10_000]
    )
    if not ids:
        return 0
    deleted, _ = WebhookDelivery.objects.filter(pk__in=ids).delete()
    return deleted


def _client(timeout: float) -> httpx.Client:
    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        # No proxy from the environment: a proxy would resolve the name
        # again, after the check (devices/egress.py).
        trust_env=False,
    )


def _origin(row: WebhookDelivery) -> tuple[str, str, int | None]:
    url = httpx.URL(row.endpoint.url)
    return url.scheme, url.host, url.port


class Outcome(NamedTuple):
    status_code: int | None = None
    error: str = ""
    # False: retrying cannot help (a refused address); the call fails now.
    retry: bool = True


def _call(client: httpx.Client, row: WebhookDelivery, now: datetime) -> Outcome:
    try:
        url = httpx.URL(row.endpoint.url)
        addresses = egress.addresses_checked(url.host, url.port or _PORTS[url.scheme])
    except egress.RefusedAddress as exc:
        logger.warning(
            "webhook call refused: %s",
            exc,
            extra={"endpoint_id": row.endpoint_id, "event_id": str(row.event_id)},
        )
        return Outcome(error=f"Refused: {exc}."[:500], retry=False)
    except egress.Unresolved as exc:
        return Outcome(error=f"DNS: {exc}"[:500])
    except (httpx.InvalidURL, KeyError) as exc:
        return Outcome(error=f"Invalid URL: {exc}"[:500], retry=False)
    body = json.dumps(row.payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(
            row.endpoint.secret, body, int(now.timestamp())
        ),
        "KPNS-Event": row.event,
        "KPNS-Event-Id": str(row.event_id),
        "KPNS-Attempt": str(row.attempts + 1),
    }
    # The connection goes to an address just checked, never to what a
    # second DNS answer says; the name travels as Host and as TLS SNI, and
    # the certificate is verified against it.
    headers["Host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    outcome = Outcome()
    for address in addresses:
        pinned = url.copy_with(host=str(address))
        try:
            # Streamed and never read: a receiver cannot make us buffer a body.
            with client.stream(
                "POST", pinned, content=body, headers=headers, extensions=extensions
            ) as r:
                if 200 <= r.status_code < 300:
                    return Outcome(r.status_code)
                return Outcome(r.status_code, f"HTTP {r.status_code}")
        except httpx.ConnectError as exc:  # the next address, if any
            outcome = Outcome(error=f"{type(exc).__name__}: {exc}"[:500])
        except httpx.HTTPError as exc:
            return Outcome(error=f"{type(exc).__name__}: {exc}"[:500])
    return outcome


_PORTS = {"http": 80, "https": 443}


def _record(row: WebhookDelivery, outcome: Outcome, now: datetime) -> None:
    attempts = row.attempts + 1
    fields: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if not outcome.error:
        fields.update(status=WebhookDeliveryStatus.SUCCEEDED, delivered_at=now)
    elif not outcome.retry:
        fields.update(status=WebhookDeliveryStatus.FAILED)
    else:
        retry_at = now + timedelta(seconds=backoff_seconds(attempts))
        too_old = retry_at - row.created_at > timedelta(
            seconds=kpns_setting("WEBHOOK_MAX_AGE_SECONDS")
        )
        if attempts >= kpns_setting("WEBHOOK_MAX_ATTEMPTS") or too_old:
            fields.update(status=WebhookDeliveryStatus.FAILED)
        else:
            fields.update(next_attempt_at=retry_at)
    WebhookDelivery.objects.filter(pk=row.pk).update(**fields)


class WebhookDispatcher:
    """Runs dispatch_due in one background thread, one tick at a time.

    The scheduler calls ``tick`` every loop; it returns at once, and starts a
    new dispatch only when the previous one has finished.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kpns-webhooks")
        self._running: Future[int] | None = None
        self._lock = threading.Lock()

    def tick(self, now: datetime) -> bool:
        with self._lock:
            if self._running is not None and not self._running.done():
                return False
            if self._running is not None and self._running.exception() is not None:
                logger.warning(
                    "webhook dispatch failed", exc_info=self._running.exception()
                )
            self._running = self._pool.submit(_dispatch_in_thread, now)
            return True

    def stop(self, timeout: float | None = None) -> None:
        running = self._running
        if running is not None:
            try:
                running.result(timeout=timeout)
            except Exception:
                logger.warning("webhook dispatch failed", exc_info=True)
        # The thread's database connection must not outlive it.
        self._pool.submit(connections.close_all)
        self._pool.shutdown(wait=True)


def _dispatch_in_thread(now: datetime) -> int:
    close_old_connections()
    try:
        return dispatch_due(now=now)
    finally:
        close_old_connections()
