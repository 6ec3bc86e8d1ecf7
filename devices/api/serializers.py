from collections.abc import Mapping
from functools import cached_property
from typing import Any

from rest_framework import serializers

from devices.models import (
    DeliveryStatus,
    Device,
    Platform,
    WebhookEndpoint,
    WebhookEvent,
)


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not declare.

    Every request body is read through one: a typo such as ``ttl_second``
    was silently ignored, and the push went out with the default TTL.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = [name for name in data if name not in self.writable_names]
            if unknown:
                raise serializers.ValidationError(
                    {str(name): ["Unknown field."] for name in unknown}
                )
        return super().to_internal_value(data)

    @cached_property
    def writable_names(self) -> frozenset[str]:
        # Once per instance: the push serializer is reused per thread.
        return frozenset(
            name for name, field in self.fields.items() if not field.read_only
        )


class NoFieldsSerializer(StrictSerializer):
    """The body of an action that takes none: absent or ``{}``."""


class DeviceFieldsSerializer(StrictSerializer):
    platform = serializers.ChoiceField(choices=Platform.choices, required=False)
    alias = serializers.CharField(max_length=128, required=False, allow_blank=True)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=50
    )
    locale = serializers.CharField(max_length=16, required=False, allow_blank=True)
    timezone = serializers.CharField(max_length=64, required=False, allow_blank=True)
    app_version = serializers.CharField(max_length=32, required=False, allow_blank=True)
    attributes = serializers.DictField(required=False)


class DeviceRegisterSerializer(DeviceFieldsSerializer):
    client_key = serializers.CharField(max_length=64)


class DeviceSerializer(serializers.ModelSerializer):
    tags = serializers.SerializerMethodField()
    online = serializers.BooleanField(read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "platform",
            "alias",
            "tags",
            "locale",
            "timezone",
            "app_version",
            "attributes",
            "created_at",
            "last_seen_at",
            "online",
        ]

    def get_tags(self, device: Device) -> list[str]:
        return sorted(tag.name for tag in device.tags.all())


class RegistrationSerializer(DeviceSerializer):
    token = serializers.CharField(read_only=True)

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "token"]


# Server API (Authorization: Bearer) -------------------------------------------


class DeviceListQuerySerializer(serializers.Serializer):
    alias = serializers.CharField(max_length=128, required=False)
    tag = serializers.CharField(max_length=64, required=False)
    platform = serializers.ChoiceField(choices=Platform.choices, required=False)
    online = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="true or false"
    )


class DeviceStatusSerializer(serializers.Serializer):
    """One device's delivery of a message."""

    device_id = serializers.UUIDField()
    seq = serializers.IntegerField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)


class DeliveryCountsSerializer(serializers.Serializer):
    targeted = serializers.IntegerField()
    sent = serializers.IntegerField(help_text="Written to the device's socket.")
    delivered = serializers.IntegerField(help_text="Acknowledged by the device.")
    opened = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Not delivered yet, still alive.")
    expired = serializers.IntegerField()
    collapsed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    dropped = serializers.IntegerField()


class SocketChannelSerializer(serializers.Serializer):
    delivered = serializers.IntegerField(
        help_text="Confirmed by the device, not through a provider."
    )


class ProviderChannelSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(
        help_text="Taken by the provider (not a device confirmation)."
    )
    failed = serializers.IntegerField(
        help_text="Given up: dead credential, too large, attempts exhausted."
    )
    retrying = serializers.IntegerField(help_text="Due again or being sent.")
    delivered = serializers.IntegerField(
        help_text="Confirmed by the device through this provider first."
    )


class ChannelSplitSerializer(serializers.Serializer):
    """Deliveries by the channel that carried them (docs/native-push.md)."""

    socket = SocketChannelSerializer()
    webpush = ProviderChannelSerializer()
    fcm = ProviderChannelSerializer()
    apns = ProviderChannelSerializer()


class MessageQuerySerializer(serializers.Serializer):
    device_id = serializers.UUIDField(
        required=False, help_text="Also return this device's delivery."
    )


class MessageStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    counts = DeliveryCountsSerializer()
    recalled = serializers.IntegerField(
        help_text="Devices that acknowledged a recall of this message."
    )
    updated = serializers.IntegerField(
        help_text="Acknowledged updates of this message (one per device and update)."
    )
    channels = ChannelSplitSerializer()
    device = DeviceStatusSerializer(required=False)


class PresenceQuerySerializer(serializers.Serializer):
    alias = serializers.CharField(max_length=128, required=False)
    limit = serializers.IntegerField(min_value=0, max_value=1000, default=100)


class PresentDeviceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    alias = serializers.CharField()
    platform = serializers.ChoiceField(choices=Platform.choices)
    last_seen_at = serializers.DateTimeField(
        allow_null=True, help_text="When the current socket connected."
    )


class PresenceSerializer(serializers.Serializer):
    online = serializers.IntegerField(help_text="Devices of the app online now.")
    devices = PresentDeviceSerializer(many=True, help_text="The first `limit` of them.")


class WebhookEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "description", "created_at"]

    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices)
    )


class WebhookEndpointCreateSerializer(StrictSerializer):
    url = serializers.CharField(max_length=1000, help_text="http:// or https://")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        min_length=1,
        max_length=len(WebhookEvent.values),
    )
    description = serializers.CharField(max_length=200, required=False)


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]

    secret = serializers.CharField(
        read_only=True, help_text="Signs every call; shown only in this response."
    )
