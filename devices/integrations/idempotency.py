"""Idempotency keys: a retried create or send runs once and replays its answer.

The record is inserted in the same transaction as the request's effects,
under a unique (api key, key) constraint. A concurrent duplicate's insert
waits for that transaction (a row lock on PostgreSQL, the write lock on
SQLite), then fails and replays the stored response; if the first one rolled
back, the duplicate runs instead. So two identical requests never both send.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from devices.conf import kpns_setting
from devices.models import ApiKey, IdempotencyRecord

MAX_KEY_LENGTH = 255
PRUNE_BATCH = 10_000


class IdempotencyMismatch(ValidationError):
    """The key was used before for a different request."""


class IdempotencyBusy(Exception):
    """The key's record changed hands twice while we looked: retry later."""


@dataclass(frozen=True)
class KeyedResponse:
    status: int
    body: str  # rendered JSON
    replayed: bool


def request_hash(method: str, path: str, body: Any) -> str:
    """The request's fingerprint: method, path and the body as canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def key_validate(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError(
            {"Idempotency-Key": [f"1-{MAX_KEY_LENGTH} printable characters."]}
        )


def idempotent_call(
    *,
    api_key: ApiKey,
    key: str,
    fingerprint: str,
    call: Callable[[], tuple[int, str]],
    now: datetime | None = None,
) -> KeyedResponse:
    """Run ``call`` (returning status and rendered body) once for this key.

    Responses below 500 are stored and replayed, except 409 and 429, which
    say "not now" rather than "no": a retry may succeed, so nothing is kept
    for them, nor for a 5xx (whose effects, if any, are rolled back).
    """
    key_validate(key)
    now = now or timezone.now()
    expired_before = now - timedelta(seconds=kpns_setting("IDEMPOTENCY_TTL_SECONDS"))
    with transaction.atomic():
        for _ in range(2):
            try:
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        api_key=api_key,
                        key=key,
                        request_hash=fingerprint,
                        response_status=0,
                        response_body="",
                        created_at=now,
                    )
                break
            except IntegrityError:
                first = IdempotencyRecord.objects.get(api_key=api_key, key=key)
                if first.created_at <= expired_before:
                    first.delete()  # older than the window: the key is free
                    continue
                if first.request_hash != fingerprint:
                    raise IdempotencyMismatch(
                        {
                            "Idempotency-Key": [
                                "This key was already used for a different request."
                            ]
                        }
                    ) from None
                return KeyedResponse(
                    first.response_status, first.response_body, replayed=True
                )
        else:
            raise IdempotencyBusy(key)
        status, body = call()
        if status >= 500 or status in (409, 429):
            transaction.set_rollback(True)
            return KeyedResponse(status, body, replayed=False)
        record.response_status, record.response_body = status, body
        record.save(update_fields=["response_status", "response_body"])
    return KeyedResponse(status, body, replayed=False)


def records_prune(*, now: datetime | None = None) -> int:
    """Delete records older than the replay window (scheduler housekeeping)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=kpns_setting("IDEMPOTENCY_TTL_SECONDS"))
    ids = list(
        IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list(
            "pk", flat=True
        )[:PRUNE_BATCH]
    )
    if not ids:
        return 0
    deleted, _ = IdempotencyRecord.objects.filter(pk__in=ids).delete()
    return deleted
