"""The device's own push credentials and its app's VAPID public key
(``Authorization: Device <token>``). Thin: parse, call one service."""

from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from devices.api.auth import DeviceTokenAuthentication
from devices.api.base import PooledAPIView
from devices.api.schema import problem
from devices.native import selectors, services
from devices.native.models import CredentialKind, PushCredential
from devices.native.serializers import (
    OpenedInSerializer,
    PushCredentialInSerializer,
    PushCredentialSerializer,
    VapidPublicKeySerializer,
)


class DeviceView(PooledAPIView):
    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]


class PushCredentialCollectionView(DeviceView):
    @extend_schema(
        tags=["device"],
        summary="List own push credentials",
        responses=PushCredentialSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        credentials = PushCredential.objects.filter(device=request.auth).order_by(
            "kind"
        )
        return Response(PushCredentialSerializer(credentials, many=True).data)

    @extend_schema(
        tags=["device"],
        summary="Register a push credential",
        description="Web Push subscription, FCM registration token or APNs "
        "device token; one per kind, a new one replaces the old.",
        request=PushCredentialInSerializer,
        responses={201: PushCredentialSerializer},
    )
    def post(self, request: Request) -> Response:
        incoming = PushCredentialInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        credential = services.credential_register(
            device=request.auth, **incoming.validated_data
        )
        return Response(
            PushCredentialSerializer(credential).data, status=status.HTTP_201_CREATED
        )


class PushCredentialItemView(DeviceView):
    @extend_schema(
        tags=["device"], summary="Remove a push credential", responses={204: None}
    )
    def delete(self, request: Request, kind: str) -> Response:
        if kind not in CredentialKind.values or not services.credential_unregister(
            device=request.auth, kind=kind
        ):
            raise NotFound("This device has no credential of that kind.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class VapidPublicKeyView(DeviceView):
    @extend_schema(
        tags=["device"],
        summary="The app's VAPID public key (Web Push)",
        responses=VapidPublicKeySerializer,
    )
    def get(self, request: Request) -> Response:
        key = selectors.vapid_public_key(app=request.auth.app)
        return Response({"vapid_public_key": key})


class OpenedView(DeviceView):
    @extend_schema(
        tags=["device"],
        summary="Report a push opened",
        description="For a push that reached the device outside its socket "
        "(a service worker's notification, an app woken by FCM or APNs): "
        "the delivery becomes delivered and opened, once.",
        request=OpenedInSerializer,
        responses={
            204: None,
            **problem(404, "This device was sent no message with that id and seq."),
        },
    )
    def post(self, request: Request) -> Response:
        incoming = OpenedInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        found = services.native_opened(
            device=request.auth,
            message_id=str(incoming.validated_data["id"]),
            seq=incoming.validated_data["seq"],
        )
        if not found:
            raise NotFound("This device has no such message.")
        return Response(status=status.HTTP_204_NO_CONTENT)


SERVICE_WORKER = Path(__file__).resolve().parent.parent / "static/kpns/sw.js"


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """The SDK's service worker from the site's root, so that it may control
    every page of the origin (a worker's scope is at most its own path,
    unless Service-Worker-Allowed widens it)."""
    response = HttpResponse(
        SERVICE_WORKER.read_bytes(), content_type="text/javascript; charset=utf-8"
    )
    response["Service-Worker-Allowed"] = "/"
    # Browsers check a worker for updates at most daily past this anyway.
    response["Cache-Control"] = "no-cache"
    return response
