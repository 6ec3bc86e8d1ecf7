"""Server API of the campaigns side: pushes (targets resolved through
audiences) and campaigns. Thin: parse, call one service, serialize; every
campaign change goes through campaigns.lifecycle / campaigns.sender."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import abtest, canary, lifecycle, pacing, recall, sender
from campaigns.api.segments import with_segment
from campaigns.api.serializers import (
    CampaignListQuerySerializer,
    CampaignResultSerializer,
    CampaignSerializer,
    CampaignStatsSerializer,
    CampaignWriteSerializer,
    ResultsQuerySerializer,
    ScheduleSerializer,
    StatsQuerySerializer,
    WinnerSerializer,
)
from campaigns.api.templates import content_from_template
from campaigns.models import Campaign
from campaigns.selectors import (
    campaign_channels,
    campaign_counts_by,
    campaign_deliveries,
    campaign_of_app,
    campaign_platforms,
    campaign_stats,
    campaign_timeline,
)
from devices.api.base import (
    Conflict,
    KeysetPagination,
    ServerAPIView,
    idempotent,
    paginated,
)
from devices.api.recalls import UpdateSerializer
from devices.api.schema import IDEMPOTENCY_KEY, problem
from devices.api.serializers import NoFieldsSerializer

_checkers = threading.local()


@contextmanager
def _state_conflicts() -> Iterator[None]:
    """A lifecycle refusal (wrong state) is a 409, not a 400."""
    try:
        yield
    except lifecycle.CampaignStateError as exc:
        raise Conflict(" ".join(exc.messages)) from exc


def _campaign(view: ServerAPIView, campaign_id: int) -> Campaign:
    campaign = campaign_of_app(view.app, campaign_id)
    if campaign is None:
        raise NotFound("No such campaign for this app.")
    return campaign


@extend_schema(tags=["campaigns"])
class CampaignCollectionView(ServerAPIView):
    scopes = {"GET": "campaigns:read", "POST": "campaigns:write"}
    query_serializer = CampaignListQuerySerializer
    pagination_class = KeysetPagination

    @extend_schema(
        summary="List campaigns",
        description="Newest first.",
        parameters=[CampaignListQuerySerializer],
        responses=CampaignSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = CampaignListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        campaigns = Campaign.objects.filter(app=self.app, **query.validated_data)
        return paginated(self, campaigns, CampaignSerializer, ordering="-id")

    @extend_schema(
        summary="Create a campaign (draft)",
        parameters=[IDEMPOTENCY_KEY],
        request=CampaignWriteSerializer,
        responses={201: CampaignSerializer, **problem(422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        incoming = CampaignWriteSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        fields = content_from_template(self.app, incoming.validated_data)
        fields = with_segment(fields, {})
        campaign = lifecycle.campaign_create(app=self.app, **fields)
        return Response(CampaignSerializer(campaign).data, status=201)


@extend_schema(tags=["campaigns"])
class CampaignItemView(ServerAPIView):
    scopes = {"GET": "campaigns:read", "PATCH": "campaigns:write"}

    @extend_schema(summary="Read a campaign", responses=CampaignSerializer)
    def get(self, request: Request, campaign_id: int) -> Response:
        return Response(CampaignSerializer(_campaign(self, campaign_id)).data)

    @extend_schema(
        summary="Update a draft",
        description="Only drafts can be edited (409 otherwise).",
        request=CampaignWriteSerializer,
        responses={200: CampaignSerializer, **problem(409)},
    )
    def patch(self, request: Request, campaign_id: int) -> Response:
        campaign = _campaign(self, campaign_id)
        incoming = CampaignWriteSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        fields = with_segment(dict(incoming.validated_data), campaign.audience)
        with _state_conflicts():
            campaign = lifecycle.campaign_update(
                campaign=campaign, **content_from_template(self.app, fields)
            )
        return Response(CampaignSerializer(campaign).data)


def _action_view(
    summary: str,
    description: str,
    act: Callable[[Campaign, dict[str, Any]], Campaign],
    request_serializer: Any = None,
) -> type[ServerAPIView]:
    """A POST that moves a campaign through the lifecycle."""

    class CampaignActionView(ServerAPIView):
        scopes = {"POST": "campaigns:write"}

        @extend_schema(
            tags=["campaigns"],
            summary=summary,
            description=description,
            parameters=[IDEMPOTENCY_KEY],
            request=request_serializer,
            responses={200: CampaignSerializer, **problem(409), **problem(422)},
        )
        @idempotent
        def post(self, request: Request, campaign_id: int) -> Response:
            campaign = _campaign(self, campaign_id)
            # No body (or null), or the serializer's fields; nothing else.
            body = {} if request.data is None else request.data
            incoming = (request_serializer or NoFieldsSerializer)(data=body)
            incoming.is_valid(raise_exception=True)
            fields = dict(incoming.validated_data)
            with _state_conflicts():
                campaign = act(campaign, fields)
            return Response(CampaignSerializer(campaign).data)

    CampaignActionView.__name__ = CampaignActionView.__qualname__ = (
        summary.title().replace(" ", "") + "View"
    )
    return CampaignActionView


CampaignSendView = _action_view(
    "Send now",
    "Schedules the campaign for now and sends to its online devices at once; "
    "the scheduler sends the rest. A draft or scheduled campaign only.",
    lambda campaign, _fields: sender.campaign_send_now(campaign=campaign),
)
CampaignScheduleView = _action_view(
    "Schedule",
    "Schedules a draft for `send_at` (default: its own). With `local_time` "
    "the wall-clock time applies in each device's time zone.",
    lambda campaign, fields: lifecycle.campaign_schedule(campaign=campaign, **fields),
    ScheduleSerializer,
)
CampaignWinnerView = _action_view(
    "Pick the winner",
    "An A/B test with a test group, sending or waiting for its winner: the "
    "variant given goes to the rest of the audience now, before the window "
    "ends. 409 once a winner is chosen (or without a test group).",
    lambda campaign, fields: abtest.winner_pick(
        campaign=campaign, key=fields["variant"]
    ),
    WinnerSerializer,
)
CampaignPauseView = _action_view(
    "Pause",
    "Holds a sending campaign: no more chunks go out until it is resumed "
    "(its waves are not judged meanwhile). 409 unless sending.",
    lambda campaign, _fields: canary.campaign_pause(campaign=campaign),
)
CampaignResumeView = _action_view(
    "Resume",
    "Continues a paused campaign. After an automatic pause (a canary wave "
    "crossed a threshold) this overrides the verdict: the next wave goes out.",
    lambda campaign, _fields: canary.campaign_resume(campaign=campaign),
)
CampaignPromoteView = _action_view(
    "Promote",
    "A canary rollout, sending or paused: the next wave goes out now without "
    "waiting for the hold. 409 when every wave is released.",
    lambda campaign, _fields: canary.wave_promote(campaign=campaign),
)
CampaignCancelView = _action_view(
    "Cancel",
    "Stops the campaign: nothing not yet written to a socket is delivered. A "
    "sent campaign can be cancelled too: that withdraws its undelivered rest. "
    "A canary rollout with canary_recall_on_abort is also recalled from the "
    "devices that have it.",
    lambda campaign, _fields: canary.campaign_abort(campaign=campaign),
)


@extend_schema(tags=["campaigns"])
class CampaignStatsView(ServerAPIView):
    scopes = {"GET": "stats:read"}
    query_serializer = StatsQuerySerializer

    @extend_schema(
        summary="Campaign stats",
        description="Deliveries by state, exact; devices capped, deferred and "
        "skipped by frequency caps and quiet hours; and sent/delivered/opened "
        "per second (per minute after 10 minutes); per A/B variant with the "
        "difference to A and its significance, and per language version.",
        parameters=[StatsQuerySerializer],
        responses=CampaignStatsSerializer,
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = _campaign(self, campaign_id)
        query = StatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        body = {
            "status": campaign.status,
            "stats": campaign_stats(campaign),
            "pacing": pacing.campaign_pacing_stats(campaign),
            "channels": campaign_channels(campaign),
            "timeline": campaign_timeline(campaign),
            "variants": abtest.variant_results(campaign),
            "languages": campaign_counts_by(campaign, "locale"),
            "waves": canary.wave_results(campaign),
            **recall.campaign_control_counts(campaign),
        }
        if query.validated_data.get("breakdown") == "platform":
            body["platforms"] = campaign_platforms(campaign)
        return Response(CampaignStatsSerializer(body).data)


@extend_schema(tags=["campaigns"])
class CampaignResultsView(ServerAPIView):
    scopes = {"GET": "stats:read"}
    query_serializer = ResultsQuerySerializer
    pagination_class = KeysetPagination

    @extend_schema(
        summary="Per-device results",
        description="One row per targeted device, ordered by device id.",
        parameters=[ResultsQuerySerializer],
        responses=CampaignResultSerializer(many=True),
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = _campaign(self, campaign_id)
        query = ResultsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = campaign_deliveries(campaign, **query.validated_data)
        return paginated(self, rows, CampaignResultSerializer, ordering="device_id")


class CampaignControlResultSerializer(serializers.Serializer):
    messages = serializers.IntegerField(help_text="The campaign's messages acted on.")
    cancelled = serializers.IntegerField(
        help_text="Deliveries not yet confirmed by their device, now never "
        "sent (again)."
    )
    targets = serializers.IntegerField(
        help_text="Recall or update frames queued, one per device and message."
    )


@extend_schema(tags=["campaigns"])
class CampaignRecallView(ServerAPIView):
    scopes = {"POST": "campaigns:write"}

    @extend_schema(
        summary="Recall a campaign",
        description="Every message of the campaign is recalled (POST "
        "/messages/{id}/recall); a campaign still sending is cancelled first. "
        "409 if nothing was sent yet.",
        request=None,
        responses={200: CampaignControlResultSerializer, **problem(409)},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = _campaign(self, campaign_id)
        body = {} if request.data is None else request.data
        NoFieldsSerializer(data=body).is_valid(raise_exception=True)
        with _state_conflicts():
            totals = recall.campaign_recall(campaign=campaign)
        return Response(CampaignControlResultSerializer(totals).data)


@extend_schema(tags=["campaigns"])
class CampaignUpdateView(ServerAPIView):
    scopes = {"POST": "campaigns:write"}

    @extend_schema(
        summary="Update a campaign's messages",
        description="The same changes to every message of the campaign (POST "
        "/messages/{id}/update). 409 if nothing was sent yet.",
        request=UpdateSerializer,
        responses={200: CampaignControlResultSerializer, **problem(409)},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = _campaign(self, campaign_id)
        incoming = UpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        with _state_conflicts():
            totals = recall.campaign_update(
                campaign=campaign, changes=dict(incoming.validated_data)
            )
        return Response(CampaignControlResultSerializer(totals).data)
