"""KPNS tunables: one typed table of defaults, each settable from the
environment as ``KPNS_<NAME>`` (docs/operations.md documents every one).

``kpns_site/settings.py`` builds ``settings.KPNS`` from the environment
with ``from_environment``; code reads it lazily with ``kpns_setting`` so
tests can override it. The type of each default is the setting's type.
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Clients ping every 25 s: below the 60 s idle timeouts of common proxies
    # (nginx proxy_read_timeout, AWS ALB), so an idle socket is never cut.
    "HEARTBEAT_SECONDS": 25,
    # Three missed heartbeats mean the device is gone.
    "IDLE_TIMEOUT_SECONDS": 75,
    "HELLO_TIMEOUT_SECONDS": 10,
    # WebSocket protocol pings from the server; 0 = none. The device pings
    # and the idle timeout above already find dead peers; server pings
    # doubled an idle socket's frames and made Daphne visit every socket
    # every 2 s (docs/benchmarks.md). Set it where a proxy between devices
    # and the servers needs server-side traffic.
    "SERVER_PING_SECONDS": 0,
    # Device frames are acks and pings; 4 KiB leaves room for future fields.
    "MAX_FRAME_BYTES": 4096,
    # Recovery delay for wake-ups the layer lost (and, embedded, for sends
    # made by the scheduler process); one indexed query per node per period.
    "SWEEP_SECONDS": 1.0,
    # A full sweep (every session's open deliveries) this often; the sweeps
    # in between look only at deliveries inserted since (devices.node).
    "SWEEP_FULL_SECONDS": 30.0,
    "NODE_HEARTBEAT_SECONDS": 5.0,
    # Rebalancing (devices.rebalance): a node holding more than its fair
    # share by this fraction sheds the excess, at most this many sockets a
    # second (0: never).
    "REBALANCE_PER_SECOND": 50.0,
    "REBALANCE_SLACK": 0.1,
    "NODE_DEAD_AFTER_SECONDS": 20.0,
    # Sockets one server process can hold (deploy/kpnsctl roll refuses to
    # drain a process whose sockets the others have no room for). 0: the
    # open-file hard limit minus 100 descriptors for the database, Redis,
    # logs and listeners (19,900 under a hard limit of 20,000).
    "MAX_SOCKETS_PER_PROCESS": 0,
    # Token checks a server process runs or queues at once; past it a new
    # socket is closed 4503 (try again later) without a query. 4 database
    # threads check about 1,000 a second unloaded: 500 is well inside an
    # SDK's 10 s handshake timeout even at a quarter of that.
    "MAX_PENDING_HANDSHAKES": 500,
    "DEFAULT_TTL_SECONDS": 4 * 7 * 86400,
    # Deliveries and messages are deleted this many days after they expire
    # (devices.delivery.retention); campaign stats stay (counters). 0: never.
    "RETENTION_DAYS": 30,
    "MAX_PENDING_PER_DEVICE": 1000,
    "MAX_PAYLOAD_BYTES": 4096,
    "RECEIPT_FLUSH_SECONDS": 0.05,
    # Flow control (docs/guarantees.md): at most this many pushes written to
    # one socket and not yet acked. Replay waits for acks past it; a live
    # socket that falls this far behind is closed with 4429 and resumes.
    "MAX_UNACKED": 500,
    # Inbound frames per socket: a token bucket of this rate and burst. Over
    # it a frame is answered with error `rate_limited` and ignored; a socket
    # that keeps flooding (RATE_LIMIT_CLOSE_AFTER rejected frames within 10 s)
    # is closed with 4400.
    "MAX_FRAMES_PER_SECOND": 50.0,
    "FRAME_BURST": 100,
    "RATE_LIMIT_CLOSE_AFTER": 200,
    "ALLOWED_ORIGINS": [],
    # A device token expires after this many days without a connection (as
    # FCM's registration tokens do after 270 days of inactivity): a lost or
    # retired phone's token stops working on its own. 0: never.
    "DEVICE_TOKEN_TTL_DAYS": 270,
    # SIGTERM drain of a server process (devices.server): how long devices
    # get to move elsewhere after their 1012 close before the rest is marked
    # offline and the process exits. Supervisors must wait longer than this
    # (deploy/supervisord.conf stopwaitsecs).
    "DRAIN_SECONDS": 10.0,
    # CPython's collector thresholds in server processes (devices.gcpause):
    # the defaults (700, 10, 10) promote every object that lives a few
    # milliseconds and run a full collection, which walks every socket's
    # objects with the event loop stopped (1 s at 10,000 sockets), every
    # few seconds under load.
    "GC_THRESHOLDS": [20_000, 5, 100],
    # Server API (docs/api.md). Requests per API key per minute (a fixed
    # one-minute window in the Django cache); over it: 429 with Retry-After.
    "API_RATE_PER_MINUTE": 6000,
    # Device registration (public: the client key ships inside every app),
    # per client key and per source address (an IPv6 client by its /64),
    # a minute each (devices/api/throttling.py). 6,000 a minute holds an
    # app's launch-day spike of new installs; one address registering more
    # than 60 devices a minute is a script, not people behind a NAT.
    "REGISTER_RATE_PER_MINUTE": 6000,
    "REGISTER_ADDRESS_RATE_PER_MINUTE": 60,
    # How long a process trusts an API key it has checked. A key revoked
    # (or edited) is dropped at once by the process that changed it and
    # within this many seconds by the others. 0: look every key up.
    "API_KEY_CACHE_SECONDS": 5.0,
    # Messages in one POST /api/v1/pushes/batch.
    "API_MAX_BATCH": 500,
    # Which apps subscribe to delivery webhooks, as a receipt flush sees it:
    # re-read after this long (at once in the process that changed one).
    "WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS": 1.0,
    # POST /api/v1/pushes/stream (NDJSON): at most MAX_BYTES and MAX_LINES a
    # request; CHUNK valid lines are written (one statement) and answered
    # together. 1,000 keeps a chunk's statement near 30 ms on our machine.
    "API_STREAM_MAX_BYTES": 64 * 1024 * 1024,
    "API_STREAM_MAX_LINES": 100_000,
    "API_STREAM_CHUNK": 1000,
    # Group commit of concurrent POST /api/v1/pushes in one process
    # (devices.delivery.groupcommit): at most MAX pushes per transaction
    # (1: each its own); a group's leader waits at most WAIT for requests
    # already in the process, never when it is alone. 2 ms is about one
    # push request's own CPU: a wait that pays for itself when it shares.
    "PUSH_GROUP_MAX": 64,
    "PUSH_GROUP_WAIT_SECONDS": 0.002,
    # Devices one direct push may reach; larger audiences are campaigns,
    # which are sent in chunks by the scheduler.
    "API_MAX_PUSH_DEVICES": 10_000,
    # How long a response is replayed for a repeated Idempotency-Key.
    "IDEMPOTENCY_TTL_SECONDS": 86400,
    # Webhooks (devices.webhooks): one call's timeout, then retries after
    # BACKOFF, 2x BACKOFF, 4x ... up to MAX_ATTEMPTS calls, and never for an
    # event older than MAX_AGE. At most BATCH calls per scheduler tick,
    # CONCURRENCY at a time.
    "WEBHOOK_TIMEOUT_SECONDS": 5.0,
    "WEBHOOK_MAX_ATTEMPTS": 10,
    "WEBHOOK_BACKOFF_SECONDS": 60.0,
    "WEBHOOK_MAX_AGE_SECONDS": 86400,
    "WEBHOOK_BATCH": 200,
    "WEBHOOK_CONCURRENCY": 16,
    # Networks (CIDRs) webhook calls may reach although they are loopback,
    # private, link-local... (devices/egress.py): on-premise receivers only.
    # Empty: only public addresses.
    "WEBHOOK_ALLOWED_NETWORKS": [],
    # Finished webhook calls are kept this long for the admin's log.
    "WEBHOOK_RETENTION_SECONDS": 7 * 86400,
    # Native push (devices.native, docs/native-push.md).
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
    # Fernet keys (comma-separated: the first seals, every one unseals)
    # for provider secrets at rest (devices.native.crypto). Empty: one key
    # derived from SECRET_KEY.
    "SECRETS_KEY": "",
}


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every setting, from ``KPNS_<NAME>`` where the environment sets it."""
    return {
        name: _parse(name, environ[f"KPNS_{name}"], default)
        if f"KPNS_{name}" in environ
        else default
        for name, default in DEFAULTS.items()
    }


def _parse(name: str, text: str, default: Any) -> Any:
    """Text as the default's type: bool, int, float or a comma list."""
    try:
        if isinstance(default, bool):
            if text.lower() not in (
                "1",
                "0",
                "true",
                "false",
                "yes",
                "no",
                "on",
                "off",
            ):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, list):
            items = [item.strip() for item in text.split(",") if item.strip()]
            if default and isinstance(default[0], int):
                return [int(item) for item in items]
            return items
    except ValueError:
        kind = type(default).__name__
        raise ValueError(f"KPNS_{name}={text!r} is not a valid {kind}") from None
    return text


def kpns_setting(name: str) -> Any:
    configured = getattr(settings, "KPNS", {})
    if name in configured:
        return configured[name]
    return DEFAULTS[name]
