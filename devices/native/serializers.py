"""Input and output of the device's push-credential endpoints."""

import re
from typing import Any

from rest_framework import serializers

from devices.api.serializers import StrictSerializer
from devices.native import services
from devices.native.models import ApnsEnvironment, CredentialKind, PushCredential
from devices.native.webpush import b64url_decode

_APNS_TOKEN_RE = re.compile(r"^[0-9a-fA-F]{64,200}$")


class WebPushKeysSerializer(StrictSerializer):
    p256dh = serializers.CharField(max_length=100)
    auth = serializers.CharField(max_length=32)

    def validate_p256dh(self, value: str) -> str:
        if len(_b64url(value)) != 65:
            raise serializers.ValidationError("Not a P-256 public key.")
        return value

    def validate_auth(self, value: str) -> str:
        if len(_b64url(value)) != 16:
            raise serializers.ValidationError("Not a 16-byte auth secret.")
        return value


def _b64url(value: str) -> bytes:
    try:
        return b64url_decode(value)
    except ValueError:
        return b""


class PushCredentialInSerializer(StrictSerializer):
    """A browser's ``PushSubscription.toJSON()`` with ``kind: webpush``, an
    FCM registration token, or an APNs device token and its environment."""

    kind = serializers.ChoiceField(choices=CredentialKind.choices)
    endpoint = serializers.URLField(max_length=2000, required=False)
    keys = WebPushKeysSerializer(required=False)
    # Part of PushSubscription.toJSON(); KPNS learns of expiry from 404/410.
    expirationTime = serializers.IntegerField(  # noqa: N815 - the browser's name
        required=False, allow_null=True, write_only=True
    )
    token = serializers.CharField(max_length=512, required=False)
    environment = serializers.ChoiceField(
        choices=ApnsEnvironment.choices, required=False
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs["kind"]
        attrs.pop("expirationTime", None)
        if kind == CredentialKind.WEBPUSH:
            return self._webpush(attrs)
        if "endpoint" in attrs or "keys" in attrs:
            raise serializers.ValidationError({"endpoint": ["Only for kind webpush."]})
        if not attrs.get("token"):
            raise serializers.ValidationError({"token": ["This field is required."]})
        if kind == CredentialKind.APNS:
            if not _APNS_TOKEN_RE.match(attrs["token"]):
                raise serializers.ValidationError({"token": ["Not an APNs token."]})
            attrs.setdefault("environment", ApnsEnvironment.PRODUCTION)
        elif "environment" in attrs:
            raise serializers.ValidationError({"environment": ["Only for kind apns."]})
        return attrs

    def _webpush(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = {
            name: ["This field is required."]
            for name in ("endpoint", "keys")
            if name not in attrs
        }
        if "token" in attrs or "environment" in attrs:
            errors["token"] = ["Not for kind webpush."]
        if errors:
            raise serializers.ValidationError(errors)
        if not services.webpush_endpoint_allowed(attrs["endpoint"]):
            raise serializers.ValidationError(
                {"endpoint": ["Not an https URL of a known push service."]}
            )
        keys = attrs.pop("keys")
        return {**attrs, "p256dh": keys["p256dh"], "auth": keys["auth"]}


class PushCredentialSerializer(serializers.ModelSerializer):
    class Meta:
        model = PushCredential
        fields = [
            "kind",
            "environment",
            "is_active",
            "created_at",
            "updated_at",
            "deactivated_at",
            "deactivation_reason",
        ]


class VapidPublicKeySerializer(serializers.Serializer):
    vapid_public_key = serializers.CharField(
        help_text="The app's VAPID public key (base64url, uncompressed P-256 "
        "point): `applicationServerKey` for `pushManager.subscribe`."
    )


class OpenedInSerializer(StrictSerializer):
    id = serializers.UUIDField(help_text="The message id, as the push carried it.")
    seq = serializers.IntegerField(min_value=1)
