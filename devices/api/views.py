"""HTTP endpoints of the devices side: a device's own (register, read and
update itself) and the server API's (devices, presence, message status,
webhook endpoints). Thin: parse, call one service or selector, serialize."""

from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from devices.api.auth import DeviceTokenAuthentication
from devices.api.base import (
    KeysetPagination,
    PooledAPIView,
    ServerAPIView,
    idempotent,
    paginated,
)
from devices.api.schema import IDEMPOTENCY_KEY, problem
from devices.api.serializers import (
    DeviceFieldsSerializer,
    DeviceListQuerySerializer,
    DeviceRegisterSerializer,
    DeviceSerializer,
    MessageQuerySerializer,
    MessageStatusSerializer,
    PresenceQuerySerializer,
    PresenceSerializer,
    RegistrationSerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointSerializer,
)
from devices.api.throttling import RegisterRateThrottle
from devices.delivery import recall, revocation, stats
from devices.integrations import webhooks
from devices.models import App, Device, Message, WebhookEndpoint
from devices.native import selectors as native_selectors
from devices.registry import selectors
from devices.registry import services as registry


class DeviceRegisterView(PooledAPIView):
    """Register a device with the app's public client key; the token is shown once."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [RegisterRateThrottle]

    @extend_schema(
        tags=["device"],
        summary="Register a device (device SDK)",
        request=DeviceRegisterSerializer,
        responses={201: RegistrationSerializer},
    )
    def post(self, request: Request) -> Response:
        incoming = DeviceRegisterSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        fields = dict(incoming.validated_data)
        registration = registry.device_register(**fields)
        body = DeviceSerializer(registration.device).data
        body["token"] = registration.token
        return Response(body, status=status.HTTP_201_CREATED)


class DeviceSelfView(PooledAPIView):
    """The calling device (``Authorization: Device <token>``)."""

    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        tags=["device"], summary="Read own device", responses=DeviceSerializer
    )
    def get(self, request: Request) -> Response:
        return Response(DeviceSerializer(request.auth).data)

    @extend_schema(
        tags=["device"],
        summary="Update own device",
        request=DeviceFieldsSerializer,
        responses=DeviceSerializer,
    )
    def patch(self, request: Request) -> Response:
        incoming = DeviceFieldsSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        device = registry.device_update(device=request.auth, **incoming.validated_data)
        return Response(DeviceSerializer(device).data)


# Server API (Authorization: Bearer kpns_sk_…) ---------------------------------


def _device_of_app(app: App, device_id: UUID) -> Device:
    device = selectors.device_of_app(app, device_id)
    if device is None:
        raise NotFound("No such device for this app.")
    return device


@extend_schema(tags=["devices"])
class DeviceCollectionView(ServerAPIView):
    """The app's registered devices."""

    scopes = {"GET": "devices:read", "POST": "devices:write"}
    query_serializer = DeviceListQuerySerializer
    pagination_class = KeysetPagination

    @extend_schema(
        summary="List devices",
        parameters=[DeviceListQuerySerializer],
        responses=DeviceSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = DeviceListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        devices = selectors.devices_filter(
            selectors.devices_of_app(self.app), **query.validated_data
        )
        return paginated(self, devices, DeviceSerializer, ordering="id")

    @extend_schema(
        summary="Register a device (server side)",
        description="Registers a device of the key's app, as `POST "
        "/api/v1/devices/register` does for a device SDK, and returns its "
        "token once: hand it to the device.",
        parameters=[IDEMPOTENCY_KEY],
        request=DeviceFieldsSerializer,
        responses={201: RegistrationSerializer, **problem(422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        incoming = DeviceFieldsSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        registration = registry.device_register(
            client_key=self.app.client_key, **incoming.validated_data
        )
        body = DeviceSerializer(registration.device).data
        body["token"] = registration.token
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(tags=["devices"])
class DeviceItemView(ServerAPIView):
    """One device of the app. A revoked device is gone (404)."""

    scopes = {
        "GET": "devices:read",
        "PATCH": "devices:write",
        "DELETE": "devices:write",
    }

    @extend_schema(summary="Read a device", responses=DeviceSerializer)
    def get(self, request: Request, device_id: UUID) -> Response:
        return Response(DeviceSerializer(_device_of_app(self.app, device_id)).data)

    @extend_schema(
        summary="Update a device",
        description="Any of the registration fields; `tags` replaces the set.",
        request=DeviceFieldsSerializer,
        responses=DeviceSerializer,
    )
    def patch(self, request: Request, device_id: UUID) -> Response:
        device = _device_of_app(self.app, device_id)
        incoming = DeviceFieldsSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        device = registry.device_update(device=device, **incoming.validated_data)
        return Response(DeviceSerializer(device).data)

    @extend_schema(
        summary="Unregister a device",
        description="Revokes the device: its token stops working, its socket is "
        "closed, and `device.unregistered` is sent to webhooks.",
        responses={204: None},
    )
    def delete(self, request: Request, device_id: UUID) -> Response:
        revocation.device_revoke(device=_device_of_app(self.app, device_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["presence"])
class PresenceView(ServerAPIView):
    """Devices of the app connected now."""

    scopes = {"GET": "devices:read"}
    query_serializer = PresenceQuerySerializer

    @extend_schema(
        summary="Who is online",
        parameters=[PresenceQuerySerializer],
        responses=PresenceSerializer,
    )
    def get(self, request: Request) -> Response:
        query = PresenceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            PresenceSerializer(
                selectors.presence(self.app, **query.validated_data)
            ).data
        )


@extend_schema(tags=["messages"])
class MessageStatusView(ServerAPIView):
    """Where a message is: its deliveries counted by state."""

    scopes = {"GET": "stats:read"}
    query_serializer = MessageQuerySerializer

    @extend_schema(
        summary="Message delivery status",
        parameters=[MessageQuerySerializer],
        responses=MessageStatusSerializer,
    )
    def get(self, request: Request, message_id: UUID) -> Response:
        query = MessageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        message = Message.objects.filter(app=self.app, pk=message_id).first()
        if message is None:
            raise NotFound("No such message for this app.")
        body = {
            "id": message.id,
            "title": message.title,
            "created_at": message.created_at,
            "expires_at": message.expires_at,
        }
        counts = body["counts"] = stats.message_stats(message.id)
        body.update(recall.control_counts(message.id))
        body["channels"] = native_selectors.channel_split(
            message.id, delivered=counts["delivered"]
        )
        device_id = query.validated_data.get("device_id")
        if device_id is not None:
            delivery = stats.message_delivery(message.id, device_id)
            if delivery is None:
                raise NotFound("This message was not sent to that device.")
            body["device"] = delivery
        return Response(MessageStatusSerializer(body).data)


@extend_schema(tags=["webhooks"])
class WebhookCollectionView(ServerAPIView):
    """The app's webhook endpoints."""

    scopes = {"GET": "webhooks:read", "POST": "webhooks:write"}

    @extend_schema(
        summary="List webhook endpoints",
        responses=WebhookEndpointSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        endpoints = WebhookEndpoint.objects.filter(app=self.app).order_by("pk")
        return Response(WebhookEndpointSerializer(endpoints, many=True).data)

    @extend_schema(
        summary="Add a webhook endpoint",
        description="Returns the signing secret, only this once.",
        parameters=[IDEMPOTENCY_KEY],
        request=WebhookEndpointCreateSerializer,
        responses={201: WebhookEndpointCreatedSerializer, **problem(422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        incoming = WebhookEndpointCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        endpoint = webhooks.webhook_endpoint_create(
            app=self.app, **incoming.validated_data
        )
        return Response(
            WebhookEndpointCreatedSerializer(endpoint).data,
            status=status.HTTP_201_CREATED,
        )


@extend_schema(tags=["webhooks"])
class WebhookItemView(ServerAPIView):
    scopes = {"GET": "webhooks:read", "DELETE": "webhooks:write"}

    def _endpoint(self, endpoint_id: int) -> WebhookEndpoint:
        endpoint = WebhookEndpoint.objects.filter(app=self.app, pk=endpoint_id).first()
        if endpoint is None:
            raise NotFound("No such webhook endpoint for this app.")
        return endpoint

    @extend_schema(
        summary="Read a webhook endpoint", responses=WebhookEndpointSerializer
    )
    def get(self, request: Request, endpoint_id: int) -> Response:
        return Response(WebhookEndpointSerializer(self._endpoint(endpoint_id)).data)

    @extend_schema(summary="Delete a webhook endpoint", responses={204: None})
    def delete(self, request: Request, endpoint_id: int) -> Response:
        webhooks.webhook_endpoint_delete(endpoint=self._endpoint(endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
