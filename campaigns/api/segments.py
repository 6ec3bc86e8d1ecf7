"""Server API of saved segments (docs/api.md, "Segments"): thin views over
campaigns.segments, under the campaigns scopes."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import segments
from campaigns.api.serializers import (
    SegmentEstimateSerializer,
    SegmentListQuerySerializer,
    SegmentSerializer,
    SegmentWriteSerializer,
)
from devices.api.base import (
    Conflict,
    KeysetPagination,
    ServerAPIView,
    idempotent,
    paginated,
)
from devices.api.schema import IDEMPOTENCY_KEY, problem
from devices.models import Segment
from devices.registry.audience import audience_estimate


def with_segment(fields: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A campaign's ``segment`` field written into its audience spec."""
    if "segment" not in fields:
        return fields
    segment = fields.pop("segment")
    audience = dict(fields.get("audience", current) or {})
    audience.pop("segment", None)
    if segment is not None:
        audience["segment"] = segment
        fields.setdefault("audience_kind", "filter")
    fields["audience"] = audience
    return fields


def _segment(view: ServerAPIView, segment_id: int) -> Segment:
    segment = Segment.objects.filter(app=view.app, pk=segment_id).first()
    if segment is None:
        raise NotFound("No such segment for this app.")
    return segment


def _spec(fields: dict[str, Any]) -> dict[str, Any]:
    if "audience" in fields:
        fields["spec"] = fields.pop("audience")
    return fields


@extend_schema(tags=["segments"])
class SegmentCollectionView(ServerAPIView):
    scopes = {"GET": "campaigns:read", "POST": "campaigns:write"}
    query_serializer = SegmentListQuerySerializer
    pagination_class = KeysetPagination

    @extend_schema(
        summary="List segments",
        description="By name; `?name=` for one.",
        parameters=[SegmentListQuerySerializer],
        responses=SegmentSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = SegmentListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = Segment.objects.filter(app=self.app, **query.validated_data)
        return paginated(self, found, SegmentSerializer, ordering="name")

    @extend_schema(
        summary="Save a segment",
        description="A named audience of the app, unique by name, with at "
        "least one condition.",
        parameters=[IDEMPOTENCY_KEY],
        request=SegmentWriteSerializer,
        responses={201: SegmentSerializer, **problem(422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        incoming = SegmentWriteSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        segment = segments.segment_create(
            app=self.app, **_spec(dict(incoming.validated_data))
        )
        return Response(SegmentSerializer(segment).data, status=201)


@extend_schema(tags=["segments"])
class SegmentItemView(ServerAPIView):
    scopes = {
        "GET": "campaigns:read",
        "PATCH": "campaigns:write",
        "DELETE": "campaigns:write",
    }

    @extend_schema(summary="Read a segment", responses=SegmentSerializer)
    def get(self, request: Request, segment_id: int) -> Response:
        return Response(SegmentSerializer(_segment(self, segment_id)).data)

    @extend_schema(
        summary="Edit a segment",
        description="Drafts and scheduled campaigns using it send to it as "
        "it is when they send. 409 for an audience change while a campaign "
        "using it is sending.",
        request=SegmentWriteSerializer,
        responses={200: SegmentSerializer, **problem(409)},
    )
    def patch(self, request: Request, segment_id: int) -> Response:
        segment = _segment(self, segment_id)
        incoming = SegmentWriteSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        try:
            segment = segments.segment_update(
                segment=segment, **_spec(dict(incoming.validated_data))
            )
        except segments.SegmentInUse as exc:
            raise Conflict(" ".join(exc.messages)) from exc
        return Response(SegmentSerializer(segment).data)

    @extend_schema(
        summary="Delete a segment",
        description="409 while a draft, scheduled or sending campaign uses it.",
        responses={204: None, **problem(409)},
    )
    def delete(self, request: Request, segment_id: int) -> Response:
        try:
            segments.segment_delete(segment=_segment(self, segment_id))
        except segments.SegmentInUse as exc:
            raise Conflict(" ".join(exc.messages)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["segments"])
class SegmentEstimateView(ServerAPIView):
    scopes = {"GET": "campaigns:read"}

    @extend_schema(
        summary="Count a segment",
        description="Its active devices now, and how many are online now.",
        responses=SegmentEstimateSerializer,
    )
    def get(self, request: Request, segment_id: int) -> Response:
        segment = _segment(self, segment_id)
        counts = audience_estimate(self.app, "filter", {"segment": segment.pk})
        return Response(SegmentEstimateSerializer(counts).data)
