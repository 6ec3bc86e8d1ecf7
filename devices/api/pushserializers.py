"""What the push endpoints take and answer (POST /pushes, /pushes/batch)."""

from typing import Any
from uuid import UUID

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from devices.api.schema import ProblemSerializer
from devices.api.serializers import StrictSerializer
from devices.delivery.messages import MAX_TTL_SECONDS
from devices.delivery.targeting import MAX_TARGET_LIST, MAX_TARGET_TAGS
from devices.models import Priority, WakeMode

_B64URL = r"^[A-Za-z0-9_-]+$"


class EncryptedSerializer(StrictSerializer):
    """An end-to-end encrypted payload (docs/e2ee.md): KPNS stores and
    forwards it as it is and cannot read it."""

    kid = serializers.RegexField(
        r"^[A-Za-z0-9_-]{1,64}$", help_text="The device key it is encrypted to."
    )
    epk = serializers.RegexField(
        _B64URL, max_length=88, help_text="Ephemeral P-256 public key (base64url)."
    )
    iv = serializers.RegexField(
        _B64URL, min_length=16, max_length=16, help_text="12-byte nonce (base64url)."
    )
    ct = serializers.RegexField(
        _B64URL, help_text="AES-128-GCM ciphertext and tag (base64url)."
    )


class PushSerializer(StrictSerializer):
    """A push: exactly one of device_ids, aliases, tags, audience or segment,
    then the content and delivery options."""

    device_ids = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        min_length=1,
        max_length=MAX_TARGET_LIST,
    )
    aliases = serializers.ListField(
        child=serializers.CharField(max_length=128),
        required=False,
        min_length=1,
        max_length=MAX_TARGET_LIST,
        help_text="Every device registered with any of these aliases (user ids).",
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        min_length=1,
        max_length=MAX_TARGET_TAGS,
        help_text="Devices with any of these tags.",
    )
    audience = serializers.DictField(
        required=False,
        help_text="An audience spec as for campaigns (docs/api.md, "
        '"Audiences"): the flat keys tags_any, tags_all, tags_none, '
        "platforms, locales, app_versions, aliases, attributes, device_ids, "
        "a condition tree under `where` and a saved `segment`, all ANDed. {} "
        "is every device of the app.",
    )
    segment = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="The id of a saved segment of the app (GET /segments), "
        "read when the push is sent.",
    )
    title = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="Required unless `encrypted`: then optional, a generic title "
        "KPNS and the device's screen may show (it is not encrypted).",
    )
    body = serializers.CharField(required=False, allow_blank=True, max_length=4096)
    url = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    image = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    data = serializers.DictField(required=False)
    ttl_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_TTL_SECONDS
    )
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    collapse_key = serializers.CharField(
        required=False, allow_blank=True, max_length=64
    )
    respect_frequency_cap = serializers.BooleanField(
        required=False,
        help_text="Leave out devices at the app's frequency cap and count this "
        "push toward it (default false: API pushes are neither capped nor "
        "counted). Single pushes only, not in a batch.",
    )
    wake_mode = serializers.ChoiceField(
        choices=WakeMode.choices,
        required=False,
        allow_blank=True,
        help_text="Devices reached through FCM or APNs: a visible notification "
        "or a data-only wake-up. Default: the app's setting.",
    )
    encrypted = EncryptedSerializer(
        required=False,
        help_text="End-to-end encrypted content for the one device in "
        "device_ids, encrypted to its current key (docs/e2ee.md). Body, url, "
        "image and data go inside it, not beside it.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "encrypted" not in attrs:
            if "title" not in attrs:
                raise serializers.ValidationError(
                    {"title": ["This field is required."]}
                )
            if not attrs["title"]:
                raise serializers.ValidationError(
                    {"title": ["This field may not be blank."]}
                )
        return attrs


class PushAcceptedSerializer(serializers.Serializer):
    message_id = serializers.UUIDField()
    targets = serializers.IntegerField(help_text="Devices the message was queued for.")
    capped = serializers.IntegerField(
        help_text="Devices left out at the app's frequency cap "
        "(respect_frequency_cap only)."
    )


@extend_schema_field(PushSerializer(many=True))
class PushItemsField(serializers.ListField):
    """Items are checked one by one (each gets its own result), so any JSON
    value is accepted here; the schema shows what each should be."""

    child = serializers.JSONField()


class BatchSerializer(StrictSerializer):
    messages = PushItemsField(
        min_length=1,
        help_text="Each item is a push (as for POST /api/v1/pushes). At most "
        "KPNS_API_MAX_BATCH (500) items.",
    )


class BatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="202 sent, or 400.")
    message_id = serializers.UUIDField(allow_null=True)
    targets = serializers.IntegerField(allow_null=True)
    error = ProblemSerializer(allow_null=True)


class BatchResultSerializer(serializers.Serializer):
    results = BatchItemResultSerializer(many=True)


# The plain shape of most pushes in bulk, checked without DRF (its field
# machinery was most of a streamed line's CPU, docs/benchmarks.md).
_PLAIN_FIELDS = frozenset(
    {"device_ids", "title", "body", "data", "ttl_seconds", "priority", "collapse_key"}
)
_TEXT_LIMITS = {"title": 200, "body": 4096, "collapse_key": 64}


def push_plain(item: dict[str, Any]) -> dict[str, Any] | None:
    """PushSerializer's validated data for a push of the plain shape
    (device_ids and content, every value already in its final form), or
    None: then the serializer decides, with its error messages. Whatever
    this accepts, the serializer accepts with the same result
    (tests/api/test_push_plain.py checks it on generated pushes)."""
    if not item.keys() <= _PLAIN_FIELDS or "title" not in item:
        return None
    ids = item.get("device_ids")
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_TARGET_LIST:
        return None
    try:
        parsed = {"device_ids": [UUID(hex=value) for value in ids]}
    except (TypeError, ValueError, AttributeError):
        return None
    for name, limit in _TEXT_LIMITS.items():
        if name in item and not _plain_text(item[name], limit, blank=name != "title"):
            return None
    data = item.get("data")
    if data is not None and not isinstance(data, dict):
        return None
    ttl = item.get("ttl_seconds")
    if ttl is not None and (type(ttl) is not int or not 0 <= ttl <= MAX_TTL_SECONDS):
        return None
    if "priority" in item and item["priority"] not in Priority.values:
        return None
    for name in item:
        if name != "device_ids":
            parsed[name] = item[name]
    if "data" in parsed and data is None:
        return None  # null is the serializer's to refuse
    return parsed


def _plain_text(value: Any, limit: int, *, blank: bool) -> bool:
    """A string the CharField keeps as it is: trimmed already, within the
    limit, encodable (no lone surrogates), and not blank unless allowed."""
    if type(value) is not str or len(value) > limit or value != value.strip():
        return False
    if not value and not blank:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value
