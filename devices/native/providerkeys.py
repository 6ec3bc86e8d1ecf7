"""An app's provider secrets: checked, sealed, replaced, cleared, never read
back. The admin's write-only form (devices.native.admin) calls these; what
a page may show of a secret is ``secret_summary``: when it was set and a
fingerprint. Design: docs/native-push.md, "Setup per provider".
"""

import hashlib
import json
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from devices.native import webpush
from devices.native.models import AppProviderConfig, CredentialKind, PushCredential

FCM_ACCOUNT_FIELDS = ("type", "project_id", "private_key", "client_email")
# Apple's key and team identifiers are 10 characters.
APNS_ID_LENGTH = 10
VAPID_REGENERATED = "VAPID keys regenerated"


def fingerprint(secret: str) -> str:
    """SHA-256 of the secret, its first 8 bytes: tells two keys apart
    without revealing anything usable."""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return "SHA256:" + ":".join(digest[i : i + 4] for i in range(0, 16, 4))


def secret_summary(secret: str, set_at: datetime | None) -> str:
    """What a page shows of a stored secret."""
    if not secret:
        return "not set"
    when = timezone.localtime(set_at).strftime("%Y-%m-%d %H:%M %Z") if set_at else "?"
    return f"set on {when}, fingerprint {fingerprint(secret)}"


def fcm_service_account_parse(text: str) -> dict[str, Any]:
    """A service account's JSON key, with an RSA private key that loads."""
    try:
        account = json.loads(text)
    except ValueError as exc:
        raise ValidationError("The service account is not JSON.") from exc
    if not isinstance(account, dict):
        raise ValidationError("The service account is not a JSON object.")
    missing = [name for name in FCM_ACCOUNT_FIELDS if not account.get(name)]
    if missing:
        raise ValidationError(f"The service account lacks {', '.join(missing)}.")
    if account["type"] != "service_account":
        raise ValidationError('The JSON key\'s "type" is not "service_account".')
    try:
        key = serialization.load_pem_private_key(
            str(account["private_key"]).encode(), password=None
        )
    except (ValueError, TypeError) as exc:
        message = "The service account's private_key does not load."
        raise ValidationError(message) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValidationError("The service account's private_key is not RSA.")
    return account


def apns_key_check(pem: str) -> None:
    """An APNs token key (.p8): a P-256 private key in PKCS#8 PEM."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        message = "The .p8 key does not load as a PEM private key."
        raise ValidationError(message) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
        key.curve, ec.SECP256R1
    ):
        raise ValidationError("The .p8 key is not a P-256 (ES256) key.")


def apns_id_check(value: str, name: str) -> None:
    if value and (len(value) != APNS_ID_LENGTH or not value.isalnum()):
        raise ValidationError(f"The APNs {name} is {APNS_ID_LENGTH} letters or digits.")


@transaction.atomic
def provider_secrets_update(
    *,
    config: AppProviderConfig,
    fcm_service_account: str = "",
    fcm_clear: bool = False,
    apns_key: str = "",
    apns_clear: bool = False,
) -> list[str]:
    """Replace (a non-empty value) or clear the FCM service account and the
    APNs key; unchanged otherwise. Returns what changed, for the log. A new
    service account also sets the FCM project id when none is set."""
    now = timezone.now()
    changed = []
    if fcm_service_account.strip():
        account = fcm_service_account_parse(fcm_service_account)
        config.fcm_service_account = fcm_service_account.strip()
        config.fcm_service_account_set_at = now
        config.fcm_project_id = config.fcm_project_id or str(account["project_id"])
        changed.append("FCM service account replaced")
    elif fcm_clear:
        config.fcm_service_account = ""
        config.fcm_service_account_set_at = None
        changed.append("FCM service account cleared")
    if apns_key.strip():
        apns_key_check(apns_key)
        config.apns_key = apns_key.strip() + "\n"
        config.apns_key_set_at = now
        changed.append("APNs key replaced")
    elif apns_clear:
        config.apns_key = ""
        config.apns_key_set_at = None
        changed.append("APNs key cleared")
    if changed:
        config.save()
    return changed


@transaction.atomic
def vapid_keys_regenerate(*, config: AppProviderConfig) -> int:
    """A new VAPID key pair. Browser subscriptions are bound to the old
    public key, so the app's Web Push credentials are deactivated (the JS
    SDK subscribes again with the new key). Returns how many."""
    public, private = webpush.vapid_keys_generate()
    config.vapid_public_key, config.vapid_private_key = public, private
    config.vapid_generated_at = timezone.now()
    config.save()
    return PushCredential.objects.filter(
        device__app_id=config.app_id, kind=CredentialKind.WEBPUSH, is_active=True
    ).update(
        is_active=False,
        deactivated_at=timezone.now(),
        deactivation_reason=VAPID_REGENERATED,
    )
