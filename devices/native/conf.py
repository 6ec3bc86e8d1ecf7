"""Native push tunables, read lazily from ``settings.KPNS`` (tests override).

Every default is documented in docs/native-push.md.
"""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Provider endpoints are settings so that tests point them at local
    # receivers. A Web Push endpoint comes with each subscription.
    "FCM_BASE_URL": "https://fcm.googleapis.com",
    "FCM_TOKEN_URL": "https://oauth2.googleapis.com/token",
    "APNS_BASE_URL_PRODUCTION": "https://api.push.apple.com",
    "APNS_BASE_URL_SANDBOX": "https://api.sandbox.push.apple.com",
    # Hosts (exact, or a suffix starting with a dot) a Web Push endpoint may
    # name: the server POSTs to whatever a device registers, so anything
    # else would let a device aim KPNS at internal addresses.
    "WEBPUSH_HOSTS": [
        ".googleapis.com",
        ".push.services.mozilla.com",
        ".notify.windows.com",
        ".push.apple.com",
    ],
    # Shown to push services in the VAPID JWT (RFC 8292 §2.1): whom to call
    # when this server misbehaves.
    "VAPID_SUBJECT": "mailto:push@example.invalid",
    # One request's budget; a provider slower than this is a failure.
    "NATIVE_TIMEOUT_SECONDS": 10.0,
    "NATIVE_CONNECT_TIMEOUT_SECONDS": 5.0,
    # Requests in flight per provider (per push service for Web Push). APNs
    # allows many streams on one connection; FCM quotas are per project.
    "NATIVE_CONCURRENCY": 64,
    # Attempts of one delivery, first included; waits of 1, 2, 4 ... s
    # (BACKOFF doubled), or the provider's Retry-After when it sends one.
    "NATIVE_MAX_ATTEMPTS": 5,
    "NATIVE_BACKOFF_SECONDS": 1.0,
    # A wait longer than this is not slept inline: the attempt is returned
    # as due at next_retry_at for the scheduler to send again.
    "NATIVE_RETRY_INLINE_MAX_SECONDS": 10.0,
    # Circuit breaker per provider: open after this many consecutive
    # failures (5xx, timeouts, refused connections), fail fast for the
    # cool-down, then let one probe through.
    "NATIVE_BREAKER_FAILURES": 5,
    "NATIVE_BREAKER_COOLDOWN_SECONDS": 30.0,
    # The delivery policy (devices.native.fallback), run by the scheduler:
    # how often it looks for deliveries no socket took (the added latency
    # of a native push past its grace), how many it claims per look, and
    # how many sends it keeps in flight (bounds its memory and the
    # database rows it holds claimed).
    "NATIVE_FALLBACK": True,
    "NATIVE_FALLBACK_SECONDS": 1.0,
    "NATIVE_FALLBACK_BATCH": 500,
    "NATIVE_FALLBACK_IN_FLIGHT": 2000,
    # Incremental looks read deliveries inserted since this long ago (a
    # primary key range); past it a delivery is found by the full look,
    # every FULL seconds (a credential registered later, a socket that
    # died unacked long after the push). Longer than any app's grace.
    "NATIVE_FALLBACK_LOOKBACK_SECONDS": 120.0,
    "NATIVE_FALLBACK_FULL_SECONDS": 30.0,
    # A claimed send is due again after this if its scheduler died before
    # recording an outcome: longer than the slowest inline send (5
    # attempts of a 10 s timeout and their backoffs, about 65 s).
    "NATIVE_CLAIM_LEASE_SECONDS": 120.0,
}


def native_setting(name: str) -> Any:
    configured = getattr(settings, "KPNS", {})
    if name in configured:
        return configured[name]
    return DEFAULTS[name]
