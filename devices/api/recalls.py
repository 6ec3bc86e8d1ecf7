"""Recall and update of a sent message (docs/api.md, "Recall and update").

Thin views over devices.delivery.recall; campaigns.recall does the same for
every message of a campaign.
"""

from typing import Any
from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from devices.api.base import Conflict, ServerAPIView
from devices.api.schema import problem
from devices.api.serializers import NoFieldsSerializer, StrictSerializer
from devices.delivery import recall
from devices.models import Message


class UpdateSerializer(StrictSerializer):
    """The fields to replace; at least one."""

    title = serializers.CharField(max_length=200, required=False)
    body = serializers.CharField(allow_blank=True, required=False, max_length=4096)
    url = serializers.URLField(max_length=1000, allow_blank=True, required=False)
    image = serializers.URLField(max_length=1000, allow_blank=True, required=False)
    data = serializers.DictField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError(
                "Give one or more of title, body, url, image, data."
            )
        return attrs


class ControlResultSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The recalled or updated message.")
    control_id = serializers.UUIDField(
        allow_null=True,
        help_text="The control message carrying the recall or update "
        "(GET /messages/{control_id} counts its acks); null if no device had it.",
    )
    cancelled = serializers.IntegerField(
        help_text="Deliveries not yet confirmed by their device, now never "
        "sent (again)."
    )
    targets = serializers.IntegerField(
        help_text="Devices sent a recall or update frame."
    )


def result_body(result: recall.ControlResult) -> dict[str, Any]:
    return {
        "id": result.message_id,
        "control_id": result.control_id,
        "cancelled": result.cancelled,
        "targets": result.targets,
    }


class _MessageControlView(ServerAPIView):
    scopes = {"POST": "push:send"}

    def message(self, message_id: UUID) -> Message:
        found = Message.objects.filter(app=self.app, pk=message_id, control="").first()
        if found is None:
            raise NotFound("No such message for this app.")
        return found


@extend_schema(tags=["pushes"])
class MessageRecallView(_MessageControlView):
    @extend_schema(
        summary="Recall a message",
        description="Cancels its deliveries not yet confirmed and sends a "
        "`recall` frame to every device that may show it (online now, or "
        "when it reconnects).",
        request=None,
        responses={200: ControlResultSerializer, **problem(404)},
    )
    def post(self, request: Request, message_id: UUID) -> Response:
        message = self.message(message_id)
        body = {} if request.data is None else request.data
        NoFieldsSerializer(data=body).is_valid(raise_exception=True)
        result = recall.message_recall(message=message)
        return Response(ControlResultSerializer(result_body(result)).data)


@extend_schema(tags=["pushes"])
class MessageUpdateView(_MessageControlView):
    @extend_schema(
        summary="Update a message",
        description="Replaces title, body, url, image or data: deliveries "
        "not yet sent carry the new content, devices that may show the old "
        "one get an `update` frame.",
        request=UpdateSerializer,
        responses={200: ControlResultSerializer, **problem(404), **problem(409)},
    )
    def post(self, request: Request, message_id: UUID) -> Response:
        message = self.message(message_id)
        incoming = UpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            result = recall.message_update(
                message=message, changes=dict(incoming.validated_data)
            )
        except recall.RecalledError as exc:
            raise Conflict(" ".join(exc.messages)) from exc
        return Response(ControlResultSerializer(result_body(result)).data)
