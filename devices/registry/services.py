"""Device registry services: apps, registration, updates, revocation, auth."""

import json
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from devices.conf import kpns_setting
from devices.integrations import webhooks
from devices.models import App, Device, DeviceTag, Platform, WebhookEvent
from devices.registry.tokens import (
    hash_token,
    new_client_key,
    new_device_token,
    token_prefix,
)
from devices.registry.versions import version_key

MAX_TAGS = 50
MAX_ATTRIBUTES_BYTES = 4096
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
UPDATABLE_FIELDS = ("platform", "alias", "locale", "timezone", "app_version")


@dataclass(frozen=True)
class Registration:
    device: Device
    token: str  # shown once: only its hash is stored


def app_create(*, name: str, default_timezone: str = "UTC") -> App:
    _check_timezone(default_timezone, field="default_timezone")
    return App.objects.create(
        name=name, client_key=new_client_key(), default_timezone=default_timezone
    )


def device_register(*, client_key: str, **fields: Any) -> Registration:
    app = App.objects.filter(client_key=client_key).first()
    if app is None:
        raise ValidationError({"client_key": ["Unknown client key."]})
    tags = fields.pop("tags", None)
    token = new_device_token()
    device = Device(
        app=app, token_hash=hash_token(token), token_prefix=token_prefix(token)
    )
    _apply_fields(device, fields, tags)
    with transaction.atomic():
        device.save()
        if tags is not None:
            device_set_tags(device=device, tags=tags)
    return Registration(device=device, token=token)


def device_update(*, device: Device, **fields: Any) -> Device:
    tags = fields.pop("tags", None)
    _apply_fields(device, fields, tags)
    with transaction.atomic():
        if fields:
            update = list(fields)
            if "app_version" in fields:
                update.append("app_version_key")
            device.save(update_fields=update)
        if tags is not None:
            device_set_tags(device=device, tags=tags)
    return device


def device_set_tags(*, device: Device, tags: Iterable[str]) -> list[str]:
    names = _clean_tags(tags)
    with transaction.atomic():
        DeviceTag.objects.filter(device=device).exclude(name__in=names).delete()
        existing = set(
            DeviceTag.objects.filter(device=device).values_list("name", flat=True)
        )
        DeviceTag.objects.bulk_create(
            DeviceTag(device=device, app_id=device.app_id, name=name)
            for name in names
            if name not in existing
        )
    return names


def device_tags(*, device: Device) -> list[str]:
    return sorted(device.tags.values_list("name", flat=True))


def device_deactivate(*, device: Device) -> bool:
    """Revoke a device's registration: its token stops working at once.

    Returns whether it was active. Closing its live socket is the delivery
    core's part (devices.delivery.revocation.device_revoke).
    """
    now = timezone.now()
    with transaction.atomic():
        revoked = Device.objects.filter(pk=device.pk, is_active=True).update(
            is_active=False, revoked_at=now
        )
        if revoked:
            webhooks.event_emit(
                app_id=device.app_id,
                event=WebhookEvent.DEVICE_UNREGISTERED,
                data={
                    "device_id": str(device.pk),
                    "alias": device.alias,
                    "platform": device.platform,
                    "revoked_at": now.isoformat(),
                },
                now=now,
            )
    device.is_active = False
    return bool(revoked)


def device_authenticate(*, token: str, with_app: bool = True) -> Device | None:
    """The active device owning this token, or None (also when it expired).

    Handshakes need only the device (``with_app=False``): Django compiles a
    select_related query with a recursive closure, a reference cycle per
    query that only a full garbage collection frees (devices.patches.daphne).
    """
    if not token or len(token) > 128:
        return None
    devices = Device.objects.filter(token_hash=hash_token(token), is_active=True)
    if with_app:
        devices = devices.select_related("app")
    device = devices.first()
    if device is None or token_expired(device, now=timezone.now()):
        return None
    return device


def device_ids_authenticate(*, tokens: Iterable[str]) -> dict[str, UUID]:
    """The id of each token's active, unexpired device, for many at once.

    One query for a batch of handshakes (devices.delivery.connects): one
    query per socket made a reconnect storm wait on round trips. Tokens
    that match nothing are left out.
    """
    by_hash = {hash_token(t): t for t in tokens if t and len(t) <= 128}
    if not by_hash:
        return {}
    now = timezone.now()
    days = kpns_setting("DEVICE_TOKEN_TTL_DAYS")
    found: dict[str, UUID] = {}
    rows = Device.objects.filter(
        token_hash__in=list(by_hash), is_active=True
    ).values_list("token_hash", "id", "node", "last_seen_at", "created_at")
    for token_hash, pk, node, last_seen_at, created_at in rows:
        seen = last_seen_at or created_at
        if days and not node and seen < now - timedelta(days=days):
            continue  # the rule of token_expired, without a model instance
        found[by_hash[token_hash]] = pk
    return found


def token_expired(device: Device, *, now: datetime) -> bool:
    """True once the device went DEVICE_TOKEN_TTL_DAYS without a connection.

    Presence writes ``last_seen_at`` at every connect and disconnect, so a
    device that keeps connecting never expires, and one online now cannot.
    """
    days = kpns_setting("DEVICE_TOKEN_TTL_DAYS")
    if not days or device.node:
        return False
    seen = device.last_seen_at or device.created_at
    return seen < now - timedelta(days=days)


def _apply_fields(
    device: Device, fields: dict[str, Any], tags: Iterable[str] | None
) -> None:
    """Validate every field (and the tags) at once, then set them."""
    errors: dict[str, list[str]] = {}
    if tags is not None:
        try:
            _clean_tags(tags)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    for name, value in fields.items():
        if name == "attributes":
            if not isinstance(value, dict):
                errors[name] = ["Must be a JSON object."]
            elif len(json.dumps(value)) > MAX_ATTRIBUTES_BYTES:
                errors[name] = [f"At most {MAX_ATTRIBUTES_BYTES} bytes of JSON."]
            continue
        if name not in UPDATABLE_FIELDS:
            errors[name] = ["Unknown field."]
            continue
        if not isinstance(value, str):
            errors[name] = ["Must be a string."]
            continue
        limit = Device._meta.get_field(name).max_length or 0
        if len(value) > limit:
            errors[name] = [f"At most {limit} characters."]
        elif name == "platform" and value not in Platform.values:
            errors[name] = [f"One of {', '.join(Platform.values)}."]
        elif name == "timezone" and value:
            try:
                _check_timezone(value, field=name)
            except ValidationError as exc:
                errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    for name, value in fields.items():
        setattr(device, name, value)
    if "app_version" in fields:
        device.app_version_key = version_key(device.app_version)


def _clean_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise ValidationError({"tags": ["Must be a list of strings."]})
    tags = list(tags)
    if not all(isinstance(t, str) for t in tags):
        raise ValidationError({"tags": ["Must be a list of strings."]})
    names = sorted(set(tags))
    if len(names) > MAX_TAGS:
        raise ValidationError({"tags": [f"At most {MAX_TAGS} tags."]})
    bad = [t for t in names if not TAG_PATTERN.match(t)]
    if bad:
        raise ValidationError(
            {"tags": [f"Invalid tag {bad[0]!r}: 1-64 of A-Z a-z 0-9 _ . : -"]}
        )
    return names


def _check_timezone(name: str, *, field: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError({field: [f"Unknown time zone {name!r}."]}) from exc
