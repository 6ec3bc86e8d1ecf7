"""Device keys for end-to-end encrypted pushes (docs/e2ee.md).

A device registers one public key (ECDH P-256); a new one replaces it. The
integrator's backend reads them from the key directory and encrypts each
push to one device; the push API checks here that it names that device's
current key, so a stale directory is a clear 400, never an undecryptable
push.
"""

import base64
import re
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from devices.models import App, Device, DeviceKey
from devices.registry.audience import audience_devices, audience_validate

ALGORITHM = "ECDH-P256"
SCHEME = "KPNS-E2EE-1"
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_DIRECTORY_IDS = 100  # device ids per directory query (a URL stays short)
POINT_BYTES = 65  # uncompressed SEC1: 0x04 || X || Y


def _point(public_key: Any) -> bytes:
    """The decoded uncompressed P-256 point; ValidationError if it is not one."""
    error = ValidationError(
        {"public_key": ["An uncompressed P-256 point (65 bytes), unpadded base64url."]}
    )
    if not isinstance(public_key, str) or not re.fullmatch(
        r"[A-Za-z0-9_-]+", public_key
    ):
        raise error
    try:  # binascii.Error (a ValueError): a length base64 cannot have
        raw = base64.urlsafe_b64decode(public_key + "=" * (-len(public_key) % 4))
        if len(raw) != POINT_BYTES or raw[0] != 4:
            raise error
        # On the curve: a point off it would leak the key of an ECDH peer.
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise error from exc
    return raw


def device_key_set(*, device: Device, kid: str, public_key: str) -> DeviceKey:
    """Register or rotate the device's public key; the old one is forgotten."""
    if not isinstance(kid, str) or not KID_PATTERN.match(kid):
        raise ValidationError({"kid": ["1 to 64 characters of A-Z a-z 0-9 - _."]})
    _point(public_key)
    key, _created = DeviceKey.objects.update_or_create(
        device=device, defaults={"kid": kid, "public_key": public_key}
    )
    return key


def device_key_delete(*, device: Device) -> bool:
    deleted, _ = DeviceKey.objects.filter(device=device).delete()
    return bool(deleted)


def keys_of_app(
    app: App,
    *,
    device_ids: list[UUID] | None = None,
    alias: str | None = None,
    tag: str | None = None,
) -> QuerySet[DeviceKey]:
    """The current keys of the app's active devices, filtered."""
    keys = DeviceKey.objects.filter(device__app=app, device__is_active=True)
    if device_ids:
        keys = keys.filter(device_id__in=device_ids)
    if alias is not None:
        keys = keys.filter(device__alias=alias)
    if tag is not None:
        keys = keys.filter(device__tags__name=tag)
    return keys


def keys_in_audience(app: App, spec: Any) -> QuerySet[DeviceKey]:
    """The current keys of the devices an audience filter names (the spec
    campaigns and pushes take; {} is every device of the app)."""
    try:
        clean = audience_validate("filter", spec)
    except ValidationError as exc:
        raise ValidationError({"audience": exc.messages}) from exc
    devices = audience_devices(app, "filter" if clean else "all", clean)
    return DeviceKey.objects.filter(device__in=devices.values("pk"))


def encrypted_push_check(*, app: App, device_ids: list[Any], kid: str) -> None:
    """An encrypted push names exactly one device, by id, whose current key
    is `kid`: its ciphertext is readable by that device alone."""
    if len(device_ids) != 1:
        raise ValidationError(
            {
                "device_ids": [
                    "An encrypted push names exactly one device: send one "
                    "push per device (a batch takes many)."
                ]
            }
        )
    current = (
        DeviceKey.objects.filter(
            device_id=device_ids[0], device__app=app, device__is_active=True
        )
        .values_list("kid", flat=True)
        .first()
    )
    if current is None:
        raise ValidationError(
            {"encrypted": ["The device has registered no key: it cannot decrypt."]}
        )
    if current != kid:
        raise ValidationError(
            {
                "encrypted": [
                    f"Key {kid!r} is not the device's current key ({current!r}): "
                    "read the key directory again and encrypt to that key."
                ]
            }
        )
