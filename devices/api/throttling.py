"""Rate limits of the HTTP API, in fixed one-minute windows.

* Per API key (the server API): KPNS_API_RATE_PER_MINUTE, claimed from
  the shared counter in blocks of 1% of the limit (_over_in_blocks).
* Device registration (public, POST /api/v1/devices/register): per client
  key, KPNS_REGISTER_RATE_PER_MINUTE, and per source address (an IPv6
  client by its /64), KPNS_REGISTER_ADDRESS_RATE_PER_MINUTE.

With REDIS_URL set the counters are in Redis, shared by every server
process: one MULTI/EXEC of INCR and EXPIRE (atomic, one round trip) on a
client of its own with a 0.25 s socket timeout. Without it they are in
Django's cache (its public API; the in-process cache by default), per
process.

When Redis fails, a request is allowed, not refused: it is counted in this
process instead (so a process still holds the limit on its own), a warning
is logged at most every LOG_EVERY seconds and
kpns_rate_limit_unchecked_total{limit} counts every such request. Failing
closed would turn a Redis outage into an API outage, and everything else
in KPNS keeps working without Redis (it carries wake-ups only: pushes are
stored in PostgreSQL and the sweep delivers them, docs/operations.md).
After a failure Redis is skipped for RETRY_REDIS_AFTER seconds, so a Redis
that stops answering costs one timeout, not one per request.
"""

import hashlib
import ipaddress
import logging
import threading
import time
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from prometheus_client import Counter
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from devices.conf import kpns_setting
from devices.models import ApiKey

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
SOCKET_TIMEOUT = 0.25
RETRY_REDIS_AFTER = 5.0
LOG_EVERY = 10.0

UNCHECKED = Counter(
    "kpns_rate_limit_unchecked_total",
    "Requests counted only in their process because the rate limit's Redis "
    "failed (allowed up to the limit per process).",
    ["limit"],
)

# Where requests are counted while Redis fails (the limit then holds per
# process): never the default cache, which is Redis too.
_fallback = LocMemCache(
    "kpns-rate-fallback", {"TIMEOUT": 2 * WINDOW_SECONDS, "MAX_ENTRIES": 100_000}
)


class _RedisCounters:
    """One client per REDIS_URL, skipped for a while after a failure."""

    def __init__(self) -> None:
        self._clients: dict[str, redis.Redis] = {}
        self._down_until = 0.0
        self._logged_at = 0.0
        self._lock = threading.Lock()

    def client(self, url: str) -> redis.Redis | None:
        if time.monotonic() < self._down_until:
            return None
        client = self._clients.get(url)
        if client is None:
            with self._lock:
                client = self._clients.get(url) or redis.Redis.from_url(
                    url,
                    socket_timeout=SOCKET_TIMEOUT,
                    socket_connect_timeout=SOCKET_TIMEOUT,
                    health_check_interval=15,
                )
                self._clients[url] = client
        return client

    def failed(self, limit: str, exc: Exception | None) -> None:
        now = time.monotonic()
        if exc is not None:
            self._down_until = now + RETRY_REDIS_AFTER
        UNCHECKED.labels(limit=limit).inc()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            logger.warning(
                "rate limit %s counted per process: Redis unavailable (%s)",
                limit,
                type(exc).__name__ if exc else "retrying shortly",
                extra={"limit": limit},
            )


_redis = _RedisCounters()


def _count(key: str, limit_name: str, by: int = 1) -> int:
    """Add `by` to this window's counter and return it."""
    ttl = 2 * WINDOW_SECONDS  # the window is in the key: the TTL only cleans up
    url = settings.REDIS_URL
    if url:
        client = _redis.client(url)
        if client is not None:
            try:
                pipe = client.pipeline(transaction=True)
                pipe.incrby(f"kpns:{key}", by)
                pipe.expire(f"kpns:{key}", ttl)
                return int(pipe.execute()[0])
            except (redis.RedisError, OSError) as exc:
                _redis.failed(limit_name, exc)
        else:
            _redis.failed(limit_name, None)
        return _cache_count(_fallback, key, ttl, by)
    return _cache_count(cache, key, ttl, by)


def _cache_count(store: Any, key: str, ttl: int, by: int = 1) -> int:
    store.add(key, 0, timeout=ttl)
    try:
        return int(store.incr(key, by))
    except ValueError:  # expired between add and incr
        store.add(key, by, timeout=ttl)
        return by


def _over(key: str, limit: int, limit_name: str) -> float | None:
    """Seconds until the window ends if ``key`` is over ``limit``, else None."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    if _count(f"rate:{key}:{window}", limit_name) > limit:
        return (window + 1) * WINDOW_SECONDS - now
    return None


# An API key's requests are claimed from the shared counter in blocks of
# 1% of its limit (at most BLOCK_MAX) and spent in the process: one Redis
# round trip per block, not per request (it was 12-15% of a push request's
# time, docs/benchmarks.md). Never more than the limit is granted; a
# process may leave up to one block of a window unspent.
BLOCK_SHARE = 100
BLOCK_MAX = 1000
_blocks: dict[str, tuple[int, int]] = {}  # key -> (window, requests left)
_blocks_lock = threading.Lock()


def _over_in_blocks(key: str, limit: int, limit_name: str) -> float | None:
    """As _over, counting in blocks claimed from the shared counter."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    with _blocks_lock:
        held = _blocks.get(key)
        if held is not None and held[0] == window and held[1] > 0:
            _blocks[key] = (window, held[1] - 1)
            return None
    block = max(1, min(limit // BLOCK_SHARE, BLOCK_MAX))
    total = _count(f"rate:{key}:{window}", limit_name, by=block)
    granted = min(block, limit - (total - block))
    if granted <= 0:
        return (window + 1) * WINDOW_SECONDS - now
    with _blocks_lock:
        _blocks[key] = (window, granted - 1)
        if len(_blocks) > 100_000:  # windows gone by: forget them
            for stale in [k for k, (w, _n) in _blocks.items() if w != window]:
                del _blocks[stale]
    return None


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self.retry_after = 0.0

    def allow_request(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        limit = kpns_setting("API_RATE_PER_MINUTE")
        if not isinstance(api_key, ApiKey) or not limit:
            return True
        # The prefix is random per key, so a reused row id never shares a count.
        wait = _over_in_blocks(f"key:{api_key.pk}:{api_key.prefix}", limit, "api_key")
        self.retry_after = wait or 0.0
        return wait is None

    def wait(self) -> float:
        return self.retry_after


class RegisterRateThrottle(BaseThrottle):
    """Device registration: per source address, then per client key."""

    def __init__(self) -> None:
        self.retry_after = 0.0

    def allow_request(self, request: Request, view: Any) -> bool:
        per_address = kpns_setting("REGISTER_ADDRESS_RATE_PER_MINUTE")
        address = _address_key(request.META.get("REMOTE_ADDR") or "")
        if per_address:
            wait = _over(f"register-addr:{address}", per_address, "register_address")
            if wait is not None:
                self.retry_after = wait
                return False
        per_key = kpns_setting("REGISTER_RATE_PER_MINUTE")
        data = request.data
        client_key = data.get("client_key") if isinstance(data, dict) else None
        if per_key and isinstance(client_key, str) and client_key:
            # Hashed: the key is public, but any string may arrive here.
            digest = hashlib.sha256(client_key.encode()).hexdigest()[:32]
            wait = _over(f"register-key:{digest}", per_key, "register_client_key")
            if wait is not None:
                self.retry_after = wait
                return False
        return True

    def wait(self) -> float:
        return self.retry_after


def _address_key(address: str) -> str:
    """An IPv4 address, or an IPv6 client's /64 (one host often has all of it)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
