"""Server API keys: created and revoked here (admin and tests), checked per request.

A key is ``kpns_sk_`` plus 32 random URL-safe characters. Only its SHA-256
hash is stored, with its first characters as a visible prefix; the plaintext
is returned once by ``api_key_create`` and never again.
"""

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from devices.conf import kpns_setting
from devices.models import ApiKey, App
from devices.registry.tokens import hash_token

KEY_PREFIX = "kpns_sk_"
VISIBLE_CHARS = len(KEY_PREFIX) + 6
SCOPES = (
    "devices:read",
    "devices:write",
    "push:send",
    "campaigns:read",
    "campaigns:write",
    "stats:read",
    "webhooks:read",
    "webhooks:write",
)
# last_used_at is written at most this often per key: a key sending
# thousands of requests a second must not turn each into a row write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Checked keys by hash, for API_KEY_CACHE_SECONDS: a key's lookup was a
# fifth of an API push's CPU (docs/benchmarks.md). Unknown keys are never
# cached (guessing must not fill memory); past the bound the cache restarts.
_checked: dict[str, tuple[float, ApiKey]] = {}
CACHE_MAX_KEYS = 10_000


@dataclass(frozen=True)
class CreatedKey:
    api_key: ApiKey
    key: str  # shown once: only its hash is stored


def api_key_create(*, app: App, name: str, scopes: Iterable[str]) -> CreatedKey:
    scopes = list(scopes)
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = ["A name is required."]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        errors["scopes"] = [
            f"Unknown scope {unknown[0]!r}; one of {', '.join(SCOPES)}."
        ]
    elif not scopes:
        errors["scopes"] = ["Choose at least one scope."]
    if errors:
        raise ValidationError(errors)
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    api_key = ApiKey.objects.create(
        app=app,
        name=name.strip(),
        key_hash=hash_token(key),
        prefix=key[:VISIBLE_CHARS],
        scopes=[s for s in SCOPES if s in scopes],
    )
    return CreatedKey(api_key=api_key, key=key)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """The key stops working at once; revoking twice keeps the first time."""
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        api_key.refresh_from_db(fields=["revoked_at"])
    forget(api_key)
    return api_key


def forget(api_key: ApiKey) -> None:
    """Drop a key from this process's cache (on revoke, save and delete)."""
    _checked.pop(api_key.key_hash, None)


def forget_all() -> None:
    _checked.clear()


def api_key_authenticate(*, key: str) -> ApiKey | None:
    """The active key with this plaintext, or None; notes when it was used.

    A key revoked, edited or deleted here is forgotten at once; another
    server process may accept it for up to API_KEY_CACHE_SECONDS more.
    """
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    key_hash = hash_token(key)
    cached = _checked.get(key_hash)
    if cached is not None and cached[0] > time.monotonic():
        api_key = cached[1]
    else:
        found = _look_up(key_hash)
        if found is None:
            _checked.pop(key_hash, None)
            return None
        api_key = found
        ttl = kpns_setting("API_KEY_CACHE_SECONDS")
        if ttl > 0:
            if len(_checked) >= CACHE_MAX_KEYS:
                _checked.clear()
            _checked[key_hash] = (time.monotonic() + ttl, api_key)
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= (
        LAST_USED_RESOLUTION
    ):
        # Conditional: of many concurrent requests, one writes.
        ApiKey.objects.filter(pk=api_key.pk).exclude(
            last_used_at__gt=now - LAST_USED_RESOLUTION
        ).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def _look_up(key_hash: str) -> ApiKey | None:
    # The hash is unique: [:1] instead of first(), whose ORDER BY costs a
    # compile step.
    return next(
        iter(
            ApiKey.objects.filter(
                key_hash=key_hash, revoked_at__isnull=True
            ).select_related("app")[:1]
        ),
        None,
    )
