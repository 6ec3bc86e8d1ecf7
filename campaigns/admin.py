"""The marketers' campaign admin: edit, target, schedule, send, follow.

Actions and views are thin: each calls one service of campaigns.lifecycle or
one selector, and reports the result.
"""

import csv
from collections.abc import Callable, Iterator
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path

from campaigns import lifecycle, sender
from campaigns.forms import CampaignForm, SendTestForm
from campaigns.models import Campaign, CampaignStatus
from campaigns.selectors import (
    RESULT_COLUMNS,
    campaign_results,
    campaign_stats,
    campaign_timeline,
)
from devices.admin import GuardedModelAdmin, asks_confirmation
from devices.models import Device
from devices.registry.audience import audience_estimate

CONTENT = (
    "Content",
    {"fields": ["app", "name", "title", "body", "url", "image", "data"]},
)
AUDIENCE_FIELDS = [
    "audience_kind",
    "tags_any",
    "tags_all",
    "tags_none",
    "platforms",
    "locales",
    "app_versions",
    "aliases",
    "attributes",
    "device_ids",
]
SCHEDULE = ("Schedule", {"fields": ["send_at", "local_time"]})
OPTIONS = (
    "Delivery options",
    {"fields": ["ttl_seconds", "priority", "collapse_key", "throttle_per_second"]},
)
STATE_FIELDS = [
    "status",
    "created_by",
    "sent_by",
    "created_at",
    "started_at",
    "finished_at",
    "failure_reason",
]


def _cancel_label(campaign: Campaign) -> str:
    pending = campaign_stats(campaign)["pending"]
    return f"{campaign} ({campaign.get_status_display()}, {pending} not delivered yet)"


@admin.register(Campaign)
class CampaignAdmin(GuardedModelAdmin):
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = ["name", "app", "status", "send_at", "local_time", "created_at"]
    list_filter = ["status", "app"]
    search_fields = ["name", "title"]
    actions = ["send_now", "schedule", "cancel", "duplicate", "send_test"]

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            return [
                CONTENT,
                ("Audience", {"fields": ["audience_kind", "audience"]}),
                SCHEDULE,
                OPTIONS,
                ("State", {"fields": STATE_FIELDS}),
            ]
        fieldsets = [
            CONTENT,
            ("Audience", {"fields": AUDIENCE_FIELDS}),
            SCHEDULE,
            OPTIONS,
        ]
        if obj is not None:
            fieldsets.append(("State", {"fields": STATE_FIELDS}))
        return fieldsets

    def get_readonly_fields(
        self, request: HttpRequest, obj: Campaign | None = None
    ) -> Any:
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            return [f.name for f in Campaign._meta.fields if f.name != "id"]
        return STATE_FIELDS

    def save_model(
        self, request: HttpRequest, obj: Campaign, form: Any, change: bool
    ) -> None:
        if not change:
            obj.created_by = request.user
        obj.save()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        campaign = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if campaign is not None:
            extra["estimate"] = audience_estimate(
                campaign.app, campaign.audience_kind, campaign.audience
            )
            extra["stats"] = campaign_stats(campaign)
            extra["campaign"] = campaign
            # The panel's buttons: only the actions this user may run.
            extra["campaign_actions"] = list(self.get_actions(request))
        return super().change_view(request, object_id, form_url, extra)

    # Live data ------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<int:pk>/stats.json",
                self._view(self.stats_view),
                name="campaign-stats",
            ),
            path(
                "<int:pk>/results.csv",
                self._view(self.results_view),
                name="campaign-results",
            ),
        ]
        return own + super().get_urls()

    def _view(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        return self.admin_site.admin_view(view)

    def stats_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        campaign = self._readable(request, pk)
        return JsonResponse(
            {
                "status": campaign.status,
                "stats": campaign_stats(campaign),
                "timeline": campaign_timeline(campaign),
            }
        )

    def results_view(self, request: HttpRequest, pk: int) -> StreamingHttpResponse:
        campaign = self._readable(request, pk)
        response = StreamingHttpResponse(
            _csv_rows(campaign_results(campaign)), content_type="text/csv"
        )
        response["Content-Disposition"] = f'attachment; filename="campaign-{pk}.csv"'
        return response

    def _readable(self, request: HttpRequest, pk: int) -> Campaign:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(Campaign, pk=pk)

    # Actions --------------------------------------------------------------

    @admin.action(description="Send now", permissions=["change"])
    def send_now(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._each(request, queryset, "queued to send now", sender.campaign_send_now)

    @admin.action(description="Schedule at its send time", permissions=["change"])
    def schedule(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._each(request, queryset, "scheduled", lifecycle.campaign_schedule)

    @admin.action(description="Cancel", permissions=["change"])
    @asks_confirmation(
        "Devices that have not received it yet never will; a cancelled "
        "campaign cannot be restarted.",
        label=_cancel_label,
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._each(request, queryset, "cancelled", lifecycle.campaign_cancel)

    @admin.action(description="Duplicate as a new draft", permissions=["add"])
    def duplicate(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._each(request, queryset, "duplicated", lifecycle.campaign_duplicate)

    @admin.action(description="Send a test to chosen devices", permissions=["change"])
    def send_test(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        form = SendTestForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for campaign in queryset:
                ids = _find_devices(campaign, form.cleaned_data["devices"])
                _message, count = lifecycle.campaign_send_test(
                    campaign=campaign, device_ids=ids
                )
                self.message_user(
                    request, f"{campaign}: test sent to {count} device(s)."
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Send a test",
            "form": form,
            "queryset": queryset,
            "opts": self.model._meta,
            "action": "send_test",
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/campaigns/send_test.html", context)

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Campaign],
        verb: str,
        service: Callable[..., Campaign],
    ) -> None:
        for campaign in queryset.select_related("app"):
            try:
                service(campaign=campaign, by=request.user)
            except ValidationError as exc:
                self.message_user(
                    request, f"{campaign}: {'; '.join(exc.messages)}", messages.ERROR
                )
            else:
                self.message_user(request, f"{campaign}: {verb}.")


def _find_devices(campaign: Campaign, text: str) -> list[Any]:
    wanted = [
        part.strip() for part in text.replace("\n", ",").split(",") if part.strip()
    ]
    ids = []
    for value in wanted:
        query = Q(alias=value)
        try:
            query |= Q(pk=value) if len(value) >= 32 else Q()
            ids += list(
                Device.objects.filter(query, app=campaign.app).values_list(
                    "pk", flat=True
                )
            )
        except ValidationError:
            continue
    return ids


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(RESULT_COLUMNS)
    for row in rows:
        yield writer.writerow(
            [
                value.isoformat() if hasattr(value, "isoformat") else value
                for value in row
            ]
        )
