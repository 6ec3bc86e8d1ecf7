"""App-reported events about a received push (docs/api.md, "Device
events"): the SDK reports, e.g., a crash after a push was opened; canary
rollouts judge a wave on them (campaigns.canary)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from devices.api.auth import DeviceTokenAuthentication
from devices.api.base import PooledAPIView
from devices.api.schema import problem
from devices.api.serializers import StrictSerializer
from devices.registry import message_events


class MessageEventInputSerializer(StrictSerializer):
    message_id = serializers.UUIDField(help_text="The push the event is about.")
    name = serializers.CharField(
        max_length=40,
        help_text="Lowercase letters, digits, _ . - (e.g. crash, uninstall).",
    )


class MessageEventSerializer(serializers.Serializer):
    recorded = serializers.BooleanField(
        help_text="false: this device had reported it already (counted once)."
    )


class MessageEventView(PooledAPIView):
    """The calling device reports an event (``Authorization: Device <token>``)."""

    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        tags=["device"],
        summary="Report an event about a received push (device SDK)",
        description="Counted once per device, message and name. 404 when "
        "the device was never sent that message.",
        request=MessageEventInputSerializer,
        responses={
            200: MessageEventSerializer,
            **problem(404, "No such push for this device."),
        },
    )
    def post(self, request: Request) -> Response:
        incoming = MessageEventInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            created = message_events.message_event_record(
                device=request.auth, **incoming.validated_data
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        except message_events.UnknownMessage as exc:
            raise NotFound("No such push for this device.") from exc
        return Response({"recorded": created})
