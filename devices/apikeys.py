"""Server API keys: created and revoked here (admin and tests), checked per request.

A key is ``kpns_sk_`` plus 32 random URL-safe characters. Only its SHA-256
hash is stored, with its first characters as a visible prefix; the plaintext
is returned once by ``api_key_create`` and never again.
"""

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from devices.models import ApiKey, App
from devices.tokens import hash_token

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
    return api_key


def api_key_authenticate(*, key: str) -> ApiKey | None:
    """The active key with this plaintext, or None; notes when it was used."""
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    # The hash is unique: [:1] instead of first(), whose ORDER BY costs a
    # compile step on every API request.
    api_key = next(
        iter(
            ApiKey.objects.filter(
                key_hash=hash_token(key), revoked_at__isnull=True
            ).select_related("app")[:1]
        ),
        None,
    )
    if api_key is None:
        return None
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
