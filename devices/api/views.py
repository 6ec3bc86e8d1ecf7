"""Device-facing HTTP endpoints: register, read and update one's own device."""

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from devices import registry
from devices.api.auth import DeviceTokenAuthentication
from devices.api.serializers import (
    DeviceFieldsSerializer,
    DeviceRegisterSerializer,
    DeviceSerializer,
    RegistrationSerializer,
)


class DeviceRegisterView(APIView):
    """Register a device with the app's public client key; the token is shown once."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=DeviceRegisterSerializer, responses={201: RegistrationSerializer}
    )
    def post(self, request: Request) -> Response:
        incoming = DeviceRegisterSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        fields = dict(incoming.validated_data)
        registration = registry.device_register(**fields)
        body = DeviceSerializer(registration.device).data
        body["token"] = registration.token
        return Response(body, status=status.HTTP_201_CREATED)


class DeviceSelfView(APIView):
    """The calling device (``Authorization: Device <token>``)."""

    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=DeviceSerializer)
    def get(self, request: Request) -> Response:
        return Response(DeviceSerializer(request.auth).data)

    @extend_schema(request=DeviceFieldsSerializer, responses=DeviceSerializer)
    def patch(self, request: Request) -> Response:
        incoming = DeviceFieldsSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        device = registry.device_update(device=request.auth, **incoming.validated_data)
        return Response(DeviceSerializer(device).data)
