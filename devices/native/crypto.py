"""Provider secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) tokens.

The key comes from ``KPNS_SECRETS_KEY`` (comma-separated Fernet keys: the
first encrypts, all decrypt, so a key can be rotated), or, when unset, is
derived from ``SECRET_KEY`` with HKDF. A database dump alone then reveals no
VAPID, FCM or APNs key (docs/native-push.md, "Secrets").
"""

import base64
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

from devices.conf import kpns_setting

# Stored values start with this, so a plaintext never passes for a token.
PREFIX = "fernet:"


def _derived_key(secret: str) -> bytes:
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"kpns-native-secrets",
        info=b"fernet",
    ).derive(secret.encode())
    return base64.urlsafe_b64encode(key)


def _fernet() -> MultiFernet:
    configured = kpns_setting("SECRETS_KEY")
    keys = [k.strip().encode() for k in configured.split(",") if k.strip()]
    if not keys:
        keys = [_derived_key(settings.SECRET_KEY)]
    return MultiFernet([Fernet(k) for k in keys])


def seal(plaintext: str) -> str:
    return PREFIX + _fernet().encrypt(plaintext.encode()).decode()


def unseal(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ValueError("Not a sealed secret.")
    try:
        return _fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise ValueError(
            "A secret cannot be decrypted: KPNS_SECRETS_KEY or SECRET_KEY changed."
        ) from exc


class SealedTextField(models.TextField):
    """Text encrypted in the database and plain in Python ('' stays '')."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if not value:
            return value
        return unseal(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return seal(value)
