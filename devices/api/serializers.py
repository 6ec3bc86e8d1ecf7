from rest_framework import serializers

from devices.models import Device, Platform


class DeviceFieldsSerializer(serializers.Serializer):
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
