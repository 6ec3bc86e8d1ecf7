"""Device keys for end-to-end encrypted pushes (docs/e2ee.md): a device sets
its own (PUT /api/v1/device/key); the integrator's backend reads the key
directory (GET /api/v1/device-keys) and encrypts to each device."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from devices.api.auth import DeviceTokenAuthentication
from devices.api.base import KeysetPagination, PooledAPIView, ServerAPIView
from devices.api.serializers import StrictSerializer
from devices.models import DeviceKey
from devices.registry import keys


class DeviceKeyInputSerializer(StrictSerializer):
    kid = serializers.CharField(
        max_length=64, help_text="The key's id, chosen by the SDK (base64url)."
    )
    public_key = serializers.CharField(
        max_length=100,
        help_text="ECDH P-256 public key: the uncompressed point (65 bytes), "
        "unpadded base64url.",
    )


class DeviceKeySerializer(serializers.ModelSerializer):
    device_id = serializers.UUIDField(read_only=True)
    algorithm = serializers.SerializerMethodField()
    updated_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = DeviceKey
        fields = ["device_id", "kid", "public_key", "algorithm", "updated_at"]

    def get_algorithm(self, key: DeviceKey) -> str:
        return keys.SCHEME


class KeyDirectoryQuerySerializer(serializers.Serializer):
    device_id = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        max_length=keys.MAX_DIRECTORY_IDS,
        help_text="Repeat for several devices.",
    )
    alias = serializers.CharField(max_length=128, required=False)
    tag = serializers.CharField(max_length=64, required=False)


class KeyAudienceSerializer(StrictSerializer):
    audience = serializers.DictField(
        help_text="An audience filter as for pushes and campaigns; {} is every "
        "device of the app."
    )


class DeviceKeyView(PooledAPIView):
    """The calling device's public key (``Authorization: Device <token>``)."""

    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        tags=["device"],
        summary="Set or rotate own public key (device SDK)",
        description="Replaces the device's key. Pushes already queued to the "
        "old key stay as they are: the SDK keeps its previous private key to "
        "decrypt them (docs/e2ee.md).",
        request=DeviceKeyInputSerializer,
        responses=DeviceKeySerializer,
    )
    def put(self, request: Request) -> Response:
        incoming = DeviceKeyInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            key = keys.device_key_set(device=request.auth, **incoming.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        return Response(DeviceKeySerializer(key).data)

    @extend_schema(
        tags=["device"],
        summary="Remove own public key",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request) -> Response:
        keys.device_key_delete(device=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["devices"])
class KeyDirectoryView(ServerAPIView):
    """The current public keys of the app's devices."""

    scopes = {"GET": "devices:read"}
    query_serializer = KeyDirectoryQuerySerializer
    pagination_class = KeysetPagination

    @extend_schema(
        summary="Key directory",
        description="The current public key of each of the app's active "
        "devices that registered one, filtered by device ids (repeat "
        "`device_id`), alias or tag; paginated by device id. Encrypt each "
        "push to the key returned here (docs/e2ee.md).",
        parameters=[KeyDirectoryQuerySerializer],
        responses=DeviceKeySerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        params = {
            "device_id": request.query_params.getlist("device_id") or None,
            "alias": request.query_params.get("alias"),
            "tag": request.query_params.get("tag"),
        }
        query = KeyDirectoryQuerySerializer(
            data={k: v for k, v in params.items() if v is not None}
        )
        query.is_valid(raise_exception=True)
        found = keys.keys_of_app(
            self.app,
            device_ids=query.validated_data.get("device_id"),
            alias=query.validated_data.get("alias"),
            tag=query.validated_data.get("tag"),
        )
        paginator = KeysetPagination()
        paginator.ordering = "device_id"
        page = paginator.paginate_queryset(found, request, view=self)
        return paginator.get_paginated_response(
            DeviceKeySerializer(page, many=True).data
        )


@extend_schema(tags=["devices"])
class KeyDirectoryQueryView(ServerAPIView):
    """The key directory for an audience filter."""

    scopes = {"POST": "devices:read"}
    pagination_class = KeysetPagination

    @extend_schema(
        summary="Key directory for an audience",
        description="As `GET /api/v1/device-keys`, for the devices an "
        "audience filter names (docs/api.md, audiences). Paginated: POST the "
        "same body to the `next` link.",
        request=KeyAudienceSerializer,
        responses=DeviceKeySerializer(many=True),
    )
    def post(self, request: Request) -> Response:
        incoming = KeyAudienceSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            found = keys.keys_in_audience(self.app, incoming.validated_data["audience"])
            paginator = KeysetPagination()
            paginator.ordering = "device_id"
            page = paginator.paginate_queryset(found, request, view=self)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        return paginator.get_paginated_response(
            DeviceKeySerializer(page, many=True).data
        )
