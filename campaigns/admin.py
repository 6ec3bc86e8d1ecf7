"""The marketers' campaign admin: edit, target, schedule, send, follow.

Actions and views are thin: each calls one service of campaigns.lifecycle or
one selector, and reports the result.
"""

import csv
import itertools
import json
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import escape, format_html

from campaigns import (
    abtest,
    canary,
    canary_console,
    console,
    lifecycle,
    pacing,
    recall_admin,
    saved_templates,
    sender,
)
from campaigns import forms as forms_module
from campaigns import segment_admin as segment_admin  # registers it
from campaigns import template_admin as template_admin  # registers it
from campaigns.canary_forms import CANARY_FORM_FIELDS
from campaigns.durations import duration_words
from campaigns.forms import (
    CampaignForm,
    PacingPreviewForm,
    SendTestForm,
    audience_spec,
)
from campaigns.models import (
    AudienceKind,
    Campaign,
    CampaignStatus,
    FrequencyCapMode,
    MessageTemplate,
)
from campaigns.selectors import (
    CSV_COLUMNS,
    campaign_counts_by,
    campaign_platforms,
    campaign_results,
    campaign_stats,
    campaign_timeline,
)
from devices.admin import GuardedModelAdmin, asks_confirmation
from devices.models import App, Device
from devices.registry.audience import audience_estimate

CONTENT = (
    "Content",
    {"fields": ["app", "name", "title", "body", "url", "image", "data"]},
)
AUDIENCE_FIELDS = [
    "audience_kind",
    "confirm_everyone",
    "segment",
    "audience_json",  # the builder (campaigns.builder); the flat boxes in it
    "device_ids",
]
SCHEDULE = ("Schedule", {"fields": ["send_at", "local_time"]})
OPTIONS = (
    "Delivery options",
    {
        "fields": [
            "ttl_seconds",
            "priority",
            "collapse_key",
            "wake_mode",
            "throttle_per_second",
        ]
    },
)
PACING_TITLE = "Frequency cap and quiet hours"
PACING_READ_ONLY = ["cap_in_words", "quiet_hours_in_words"]
AB_TEST = (
    "A/B test",
    {
        "fields": forms_module.AB_FIELDS,
        "description": "Variant A is the content above; add variants B to E "
        "and language versions below. With a test group, the variants go to "
        "that share of the audience first and the winner to the rest.",
    },
)
CANARY = (
    "Canary rollout",
    {
        "fields": CANARY_FORM_FIELDS,
        "classes": ["collapse"],
        "description": "Send in waves; after each wave's hold, a delivery or "
        "open rate below its minimum, or an error, opt-out, 4429/4400 close "
        "or app event rate above its maximum, pauses or aborts the campaign. "
        "Empty thresholds are not judged.",
    },
)
READ_ONLY_AB_TEST = (
    "A/B test",
    {"fields": ["split_percent", "test_percent", "winner_metric", "winner_after"]},
)
READ_ONLY_OPTIONS = (
    "Delivery options",
    {
        "fields": [
            "expires_after",
            "priority",
            "collapse_key",
            "wake_mode",
            "throttle_per_second",
        ]
    },
)
# Who moved it last: "Scheduled by" until it starts, then "Sent by".
STATE_FIELDS = ["status", "created_by", "created_at", "started_at", "finished_at"]
# Submit buttons of the change form: the form is saved first (if valid),
# then the service runs, so what is sent is what is on the screen.
SUBMIT_ACTIONS = {
    "_send_now": ("send_now", "queued to send now"),
    "_schedule": ("schedule", "scheduled"),
    "_unschedule": ("unschedule", "unscheduled, back to a draft"),
}
# The actions panel's buttons that post the actions form (no unsaved edits
# matter to them: they do not send the content on the screen).
PANEL_ACTIONS = [
    "pause",
    "resume",
    "promote",
    "cancel",
    "recall",
    "update_sent",
    "duplicate",
    "send_test",
]


def _cancel_label(campaign: Campaign) -> str:
    pending = campaign_stats(campaign)["pending"]
    return f"{campaign} ({campaign.get_status_display()}, {pending} not delivered yet)"


def actions_that_apply(campaign: Campaign) -> set[str]:
    """The lifecycle's moves open to a campaign in its state."""
    status = campaign.status
    moves = lifecycle.TRANSITIONS.get(status, set())
    applies = {"duplicate"}
    if status in lifecycle.EDITABLE:
        applies |= {"send_now", "send_test"}
    if status == CampaignStatus.DRAFT:
        applies.add("schedule")
    if status == CampaignStatus.SCHEDULED:
        applies.add("unschedule")
    # Canary rollouts (campaigns.canary): hold, continue, next wave now.
    if CampaignStatus.PAUSED in moves:
        applies.add("pause")
    if status == CampaignStatus.PAUSED:
        applies.add("resume")
    waiting = status in (CampaignStatus.SENDING, CampaignStatus.PAUSED)
    if waiting and canary.awaits_wave(campaign):
        applies.add("promote")
    # A draft is deleted rather than cancelled.
    if CampaignStatus.CANCELLED in moves and status != CampaignStatus.DRAFT:
        applies.add("cancel")
    if status in recall_admin.RECALLABLE:
        applies |= {"recall", "update_sent"}
    return applies


@admin.register(Campaign)
class CampaignAdmin(GuardedModelAdmin):
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = [
        "name",
        "status_badge",
        "audience_summary",
        "sent_to",
        "delivered_pct",
        "opened_pct",
        "sent_at",
    ]
    list_display_links = ["name"]
    list_filter = ["status", "app", "audience_kind"]
    search_fields = ["name", "title"]
    date_hierarchy = None
    actions = ["send_now", "schedule", "unschedule", *PANEL_ACTIONS]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        campaigns = super().get_queryset(request).select_related("segment")
        return console.campaigns_with_figures(campaigns)

    # List columns ---------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, campaign: Campaign) -> str:
        return format_html(
            '<span class="kpns-status kpns-status-{}">{}</span>',
            campaign.status,
            campaign.get_status_display(),
        )

    @admin.display(description="audience", ordering="audience_kind")
    def audience_summary(self, campaign: Campaign) -> str:
        if campaign.audience_kind == AudienceKind.ALL:
            return "Everyone"
        spec = campaign.audience or {}
        if campaign.audience_kind == AudienceKind.DEVICES:
            return f"{len(spec.get('device_ids', []))} chosen devices"
        parts = []
        for key, label in (("tags_any", "tags"), ("tags_all", "all of")):
            if spec.get(key):
                parts.append(f"{label} {', '.join(spec[key])}")
        if spec.get("tags_none"):
            parts.append(f"not {', '.join(spec['tags_none'])}")
        for key in ("platforms", "locales", "app_versions"):
            if spec.get(key):
                parts.append(", ".join(spec[key]))
        if spec.get("aliases"):
            parts.append(f"{len(spec['aliases'])} users")
        if spec.get("attributes"):
            parts.append(f"{len(spec['attributes'])} attribute rules")
        if spec.get("where"):
            parts.append("conditions")
        if spec.get("segment"):
            name = campaign.segment.name if campaign.segment else "a deleted one"
            parts.insert(0, f"segment {name}")
        summary = "; ".join(parts) or "filter"
        return summary if len(summary) <= 48 else summary[:47] + "…"

    @admin.display(description="sent at", ordering="started_at")
    def sent_at(self, campaign: Campaign) -> str:
        """When it started, or when it is due (scheduled), in the viewer's zone."""
        when = campaign.started_at or campaign.send_at
        if when is None:
            return "—"
        text = timezone.localtime(when).strftime("%d %b %Y, %H:%M")
        if campaign.started_at is None:
            return f"due {text}" if campaign.status == CampaignStatus.SCHEDULED else "—"
        return text

    @admin.display(description="sent", ordering="n_targeted")
    def sent_to(self, campaign: Campaign) -> int:
        return getattr(campaign, "n_targeted", 0)

    @admin.display(description="delivered", ordering="delivered_rate")
    def delivered_pct(self, campaign: Campaign) -> str:
        return _percent(getattr(campaign, "delivered_rate", None))

    @admin.display(description="opened", ordering="opened_rate")
    def opened_pct(self, campaign: Campaign) -> str:
        return _percent(getattr(campaign, "opened_rate", None))

    # The change page ------------------------------------------------------

    def has_change_permission(
        self, request: HttpRequest, obj: Campaign | None = None
    ) -> bool:
        # Sending, sent, cancelled and failed campaigns are read-only: the
        # page is a view with only the actions that still apply.
        if obj is not None and obj.status not in lifecycle.EDITABLE:
            return False
        return super().has_change_permission(request, obj)

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        if obj is not None and obj.status not in lifecycle.EDITABLE:
            return [
                CONTENT,
                READ_ONLY_AB_TEST,
                ("Audience", {"fields": ["audience_kind", "audience_summary"]}),
                ("Schedule", {"fields": ["send_at", "local_time"]}),
                READ_ONLY_OPTIONS,
                self._pacing_fieldset(obj, PACING_READ_ONLY),
                *(
                    [("Canary rollout", {"fields": CANARY_FORM_FIELDS})]
                    if obj.wave_percents
                    else []
                ),
                ("State", {"fields": [*STATE_FIELDS, "sent_by", "failure_reason"]}),
            ]
        fieldsets: list[Any] = [
            CONTENT,
            AB_TEST,
            ("Audience", {"fields": AUDIENCE_FIELDS}),
            SCHEDULE,
            OPTIONS,
            self._pacing_fieldset(obj, pacing.PACING_FIELDS),
            CANARY,
        ]
        if obj is not None:
            who = "scheduled_by" if obj.status == CampaignStatus.SCHEDULED else None
            fields = [*STATE_FIELDS, who] if who else STATE_FIELDS
            fieldsets.append(("State", {"fields": fields, "classes": ["collapse"]}))
        return fieldsets

    def get_readonly_fields(
        self, request: HttpRequest, obj: Campaign | None = None
    ) -> Any:
        if obj is not None and obj.status not in lifecycle.EDITABLE:
            return [
                *(f.name for f in Campaign._meta.fields if f.name != "id"),
                "audience_summary",
                "expires_after",
                "cap_in_words",
                "quiet_hours_in_words",
                "winner_after",
            ]
        return [*STATE_FIELDS, "scheduled_by"]

    def _pacing_fieldset(self, obj: Campaign | None, fields: list[str]) -> Any:
        note = pacing.pacing_note(
            obj.app if obj is not None else None,
            timezone.get_current_timezone(),
            campaign=obj,
        )
        return (
            PACING_TITLE,
            # The admin shows a description as HTML: the app's name is text.
            {
                "fields": fields,
                "description": escape(note),
                "classes": ["kpns-pacing-box"],  # pacing.js updates the note
            },
        )

    @admin.display(description="frequency cap")
    def cap_in_words(self, campaign: Campaign) -> str:
        words = pacing.cap_words(pacing.campaign_cap(campaign))
        if campaign.frequency_cap_mode == FrequencyCapMode.APP:
            return f"The app's: {words[0].lower()}{words[1:]}"
        return words

    @admin.display(description="quiet hours")
    def quiet_hours_in_words(self, campaign: Campaign) -> str:
        return pacing.quiet_hours_words(campaign)

    @admin.display(description="scheduled by")
    def scheduled_by(self, campaign: Campaign) -> str:
        return str(campaign.sent_by or "—")

    @admin.display(description="expires after")
    def expires_after(self, campaign: Campaign) -> str:
        return duration_words(campaign.ttl_seconds)

    @admin.display(description="choose the winner after")
    def winner_after(self, campaign: Campaign) -> str:
        return duration_words(campaign.winner_window_seconds)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """?template=ID: a new campaign starts with that template's content."""
        initial = super().get_changeform_initial_data(request)
        chosen = _int(request.GET.get("template"))
        template = MessageTemplate.objects.filter(pk=chosen).first()
        if template is not None:
            initial.update(saved_templates.template_content(template))
            initial.update(app=template.app_id, name=template.name)
        return initial

    def save_model(
        self, request: HttpRequest, obj: Campaign, form: Any, change: bool
    ) -> None:
        fields = {name: getattr(obj, name) for name in lifecycle.CAMPAIGN_UPDATABLE}
        # The variants and languages sub-forms (None: not posted, kept).
        content = {"variants": form.variants, "languages": form.languages}
        if change:
            lifecycle.campaign_update(campaign=obj, **fields, **content)
            return
        created = lifecycle.campaign_create(
            app=obj.app,
            created_by=request.user,
            **fields,
            **{name: rows or [] for name, rows in content.items()},
        )
        obj.pk, obj.created_by = created.pk, created.created_by
        obj.created_at, obj.updated_at = created.created_at, created.updated_at

    def response_add(
        self, request: HttpRequest, obj: Campaign, post_url_continue: Any = None
    ) -> HttpResponse:
        return self._after_save(request, obj) or super().response_add(
            request, obj, post_url_continue
        )

    def response_change(self, request: HttpRequest, obj: Campaign) -> HttpResponse:
        return self._after_save(request, obj) or super().response_change(request, obj)

    def _after_save(self, request: HttpRequest, obj: Campaign) -> HttpResponse | None:
        """Send now / Schedule / Unschedule pressed: run it on what was saved."""
        for button, (name, verb) in SUBMIT_ACTIONS.items():
            if button in request.POST:
                if name not in self.get_actions(request):
                    raise PermissionDenied
                self._run(request, obj, _SERVICES[name], verb)
                return redirect(_change_url(obj))
        # Saved: back on the campaign, not the list (Save and continue).
        if "_addanother" not in request.POST and "_saveasnew" not in request.POST:
            self.message_user(request, f"{obj}: saved.", messages.SUCCESS)
            return redirect(_change_url(obj))
        return None

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Campaign | None = None,
    ) -> HttpResponse:
        allowed = set(self.get_actions(request))
        applies = actions_that_apply(obj) if obj is not None else {"send_now"}
        if obj is None:
            applies.add("schedule")
        offered = applies & allowed
        context["submit_actions"] = [
            (button, name)
            for button, (name, _) in SUBMIT_ACTIONS.items()
            if name in offered
            and (obj is None or self.has_change_permission(request, obj))
        ]
        context["campaign_actions"] = [n for n in PANEL_ACTIONS if n in offered]
        context["estimate_url"] = reverse("admin:campaign-estimate")
        context["preview_data"] = json.dumps(obj.data if obj is not None else {})
        context["readonly_campaign"] = obj is not None and (
            obj.status not in lifecycle.EDITABLE
        )
        # Only a draft offers Delete: a campaign that was scheduled or sent
        # keeps its record (an app's deletion still takes its campaigns).
        context["show_delete"] = obj is not None and obj.status == CampaignStatus.DRAFT
        adminform = context.get("adminform")
        form = getattr(adminform, "form", None)
        if form is not None and hasattr(form, "variant_forms"):
            context["variant_forms"] = form.variant_forms
            context["language_forms"] = form.language_forms
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

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
            extra["pacing_stats"] = pacing.campaign_pacing_stats(campaign)
            extra["zones_waiting"] = _zones_waiting(campaign)
            extra["campaign"] = campaign
            extra["variants"] = list(campaign.variants.all())
            extra["languages"] = list(campaign.languages.all())
            extra["waves"] = canary_console.waves_shown(campaign)
            extra["canary_reason"] = canary_console.reason_shown(campaign)
            extra["wave_hold_words"] = duration_words(campaign.wave_hold_seconds)
            if campaign.status != CampaignStatus.DRAFT:
                extra.update(_breakdowns(campaign))
                extra["can_pick_winner"] = (
                    abtest.awaits_winner(campaign)
                    and campaign.status == CampaignStatus.SENDING
                    and (self._may_change(request))
                )
            if campaign.status not in lifecycle.EDITABLE:
                extra["title"] = f"{campaign.get_status_display()} campaign"
        return super().change_view(request, object_id, form_url, extra)

    # Live data ------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "estimate.json",
                self._view(self.estimate_view),
                name="campaign-estimate",
            ),
            path(
                "pacing.json",
                self._view(self.pacing_view),
                name="campaign-pacing",
            ),
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
            path(
                "<int:pk>/winner/",
                self._view(self.winner_view),
                name="campaign-winner",
            ),
        ]
        return own + super().get_urls()

    def _view(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        return self.admin_site.admin_view(view)

    def estimate_view(self, request: HttpRequest) -> JsonResponse:
        """The audience being composed: matching and online now, live."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        query = request.GET
        app = App.objects.filter(pk=_int(query.get("app"))).first()
        if app is None:
            return JsonResponse({"error": "Choose the app first."})
        kind = query.get("audience_kind") or AudienceKind.ALL
        try:
            attributes = json.loads(query.get("attributes") or "[]")
        except json.JSONDecodeError:
            return JsonResponse({"error": "Attributes: not valid JSON."})
        try:
            spec = audience_spec(
                {**query.dict(), "platforms": query.getlist("platforms")}, attributes
            )
        except ValidationError as exc:
            return JsonResponse({"error": " ".join(exc.messages)})
        body = console.console_estimate(app, kind, spec)
        if "error" not in body:
            body["total"] = app.devices.filter(is_active=True).count()
            wall = _wall(query.get("send_at_0"), query.get("send_at_1"))
            if query.get("local_time") and wall is not None:
                times = console.local_schedule(app, kind, spec, wall)
                body["local_note"] = console.local_schedule_note(times, wall)
        return JsonResponse(body)

    def pacing_view(self, request: HttpRequest) -> JsonResponse:
        """The pacing box's words for the app and the settings being typed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        app = App.objects.filter(pk=_int(request.GET.get("app"))).first()
        form = PacingPreviewForm(request.GET)
        campaign = Campaign(app=app, **form.typed()) if app is not None else None
        return JsonResponse(
            {
                "note": pacing.pacing_note(
                    app, timezone.get_current_timezone(), campaign=campaign
                ),
                "campaign": pacing.campaign_summary(campaign) if campaign else "",
            }
        )

    def stats_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        campaign = self._readable(request, pk)
        return JsonResponse(
            {
                "status": campaign.status,
                # The page shows the label ("Sent"); the poll must not
                # replace it with the value ("sent").
                "status_display": campaign.get_status_display(),
                "stats": campaign_stats(campaign),
                "pacing": pacing.campaign_pacing_stats(campaign),
                "timeline": campaign_timeline(campaign),
            }
        )

    def winner_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The marketer picks the A/B test's winner before its window ends."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self._may_change(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=pk)
        key = request.POST.get("variant", "")
        try:
            abtest.winner_pick(campaign=campaign, key=key, by=request.user)
        except ValidationError as exc:
            self.message_user(
                request, f"{campaign}: {'; '.join(exc.messages)}", messages.ERROR
            )
        else:
            self.message_user(request, f"{campaign}: variant {key} goes to the rest.")
        return redirect(_change_url(campaign))

    def _may_change(self, request: HttpRequest) -> bool:
        # The model's permission: a sending campaign's page is read-only
        # (has_change_permission(obj) is False), its test still decidable.
        return super().has_change_permission(request)

    def results_view(self, request: HttpRequest, pk: int) -> StreamingHttpResponse:
        campaign = self._readable(request, pk)
        # Devices left out by the cap or quiet hours follow, one row each.
        rows = itertools.chain(
            campaign_results(campaign),
            pacing.exclusion_results(campaign, CSV_COLUMNS),
        )
        response = StreamingHttpResponse(_csv_rows(rows), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="campaign-{pk}.csv"'
        return response

    def _readable(self, request: HttpRequest, pk: int) -> Campaign:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(Campaign, pk=pk)

    # Actions --------------------------------------------------------------

    @admin.action(description="Send now", permissions=["change"])
    def send_now(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self._each(request, queryset, "queued to send now", "send_now")

    @admin.action(description="Schedule at its send time", permissions=["change"])
    def schedule(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self._each(request, queryset, "scheduled", "schedule")

    @admin.action(description="Unschedule (back to draft)", permissions=["change"])
    def unschedule(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self._each(
            request, queryset, "unscheduled, back to a draft", "unschedule"
        )

    @admin.action(description="Pause", permissions=["change"])
    @asks_confirmation(
        "No more devices are sent it, and its waves are not judged, until it "
        "is resumed."
    )
    def pause(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self._each(request, queryset, "paused", "pause")

    @admin.action(description="Resume", permissions=["change"])
    @asks_confirmation(
        "Sending continues. After an automatic pause this overrides the "
        "verdict: the next wave goes out now."
    )
    def resume(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self._each(request, queryset, "resumed", "resume")

    @admin.action(description="Promote to the next wave", permissions=["change"])
    @asks_confirmation(
        "The next wave goes out now, without waiting for the hold or a "
        "verdict on this one."
    )
    def promote(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self._each(request, queryset, "promoted to the next wave", "promote")

    @admin.action(description="Cancel", permissions=["change"])
    @asks_confirmation(
        "Devices that have not received it yet never will; a cancelled "
        "campaign cannot be restarted. A canary rollout set to recall what "
        "was sent when aborted is also recalled from the devices that have it.",
        label=_cancel_label,
    )
    def cancel(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        return self._each(request, queryset, "cancelled", "cancel")

    @admin.action(description="Recall from every device", permissions=["change"])
    @asks_confirmation(
        "Devices that have it are told to remove it, now or when they "
        "reconnect; devices that have not received it never will.",
        label=recall_admin.recall_label,
    )
    def recall(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        recall_admin.recall_each(self, request, queryset)
        return _back_to_campaign(request, queryset)

    @admin.action(description="Update what was sent", permissions=["change"])
    def update_sent(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        page = recall_admin.update_page(self, request, queryset)
        return page if page is not None else _back_to_campaign(request, queryset)

    @admin.action(description="Duplicate as a new draft", permissions=["add"])
    def duplicate(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        copies = []
        for campaign in queryset.select_related("app"):
            copies.append(
                lifecycle.campaign_duplicate(campaign=campaign, by=request.user)
            )
            self.message_user(request, f"{campaign}: duplicated.")
        if _from_change_page(request) and len(copies) == 1:
            return redirect(_change_url(copies[0]))
        return None

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
            return _back_to_campaign(request, queryset)
        context = {
            **self.admin_site.each_context(request),
            "title": "Send a test",
            "form": form,
            "queryset": queryset,
            "opts": self.model._meta,
            "action": "send_test",
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "return_to": request.POST.get("return_to", ""),
        }
        return TemplateResponse(request, "admin/campaigns/send_test.html", context)

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Campaign],
        verb: str,
        name: str,
    ) -> HttpResponse | None:
        for campaign in queryset.select_related("app"):
            self._run(request, campaign, _SERVICES[name], verb)
        return _back_to_campaign(request, queryset)

    def _run(
        self,
        request: HttpRequest,
        campaign: Campaign,
        service: Callable[..., Campaign],
        verb: str,
    ) -> None:
        try:
            service(campaign=campaign, by=request.user)
        except ValidationError as exc:
            self.message_user(
                request, f"{campaign}: {'; '.join(exc.messages)}", messages.ERROR
            )
        else:
            self.message_user(request, f"{campaign}: {verb}.")


_SERVICES: dict[str, Callable[..., Campaign]] = {
    "send_now": sender.campaign_send_now,
    "schedule": lifecycle.campaign_schedule,
    "unschedule": lifecycle.campaign_unschedule,
    # A canary set to recall on abort recalls too (campaigns.canary).
    "cancel": canary.campaign_abort,
    "pause": canary.campaign_pause,
    "resume": canary.campaign_resume,
    "promote": canary.wave_promote,
}


def _breakdowns(campaign: Campaign) -> dict[str, Any]:
    """The campaign page's A/B results and breakdowns (the platform one
    counts the campaign's rows: here only, never in the list)."""
    results = abtest.variant_results(campaign)
    window = timedelta(seconds=campaign.winner_window_seconds)
    return {
        "variant_results": [_shown(r) for r in results] if len(results) > 1 else [],
        "winner_window_words": duration_words(campaign.winner_window_seconds),
        "winner_due_at": campaign.started_at and campaign.started_at + window,
        "language_breakdown": [
            (locale or "default (fallback)", _rates(counts))
            for locale, counts in campaign_counts_by(campaign, "locale").items()
        ],
        "platform_breakdown": [
            (platform, _rates(counts))
            for platform, counts in campaign_platforms(campaign).items()
        ],
    }


def _shown(result: abtest.VariantResult) -> dict[str, Any]:
    difference = result.difference
    return {
        "key": result.key,
        "split_percent": result.split_percent,
        "sent": result.sent,
        "delivered_pct": _percent(result.delivered_rate),
        "opened_pct": _percent(result.opened_rate),
        "difference": "—" if difference is None else f"{difference * 100:+.1f} points",
        "verdict": result.verdict,
    }


def _rates(counts: dict[str, int]) -> dict[str, Any]:
    targeted, delivered = counts["targeted"], counts["delivered"]
    return {
        **counts,
        "delivered_pct": _percent(delivered / targeted if targeted else None),
        "opened_pct": _percent(counts["opened"] / delivered if delivered else None),
    }


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


def _int(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None


def _wall(date: str | None, time: str | None) -> datetime | None:
    """The naive date and time typed in the send time's two boxes."""
    field = forms.SplitDateTimeField(required=False)
    try:
        value = field.clean([date or "", time or ""])
    except ValidationError:
        return None
    return None if value is None else timezone.make_naive(value)


def _zones_waiting(campaign: Campaign) -> list[str]:
    """'Asia/Tokyo: at 08:00 JST (01:00 in your zone)' per zone on hold."""
    lines = []
    for row in pacing.zones_waiting(campaign):
        zone = zoneinfo.ZoneInfo(row["timezone"])
        there = row["next_chunk_at"].astimezone(zone)
        mine = timezone.localtime(row["next_chunk_at"])
        lines.append(
            f"{row['timezone']}: at {there:%H:%M} {there.tzname()} "
            f"({mine:%d %b, %H:%M} in your zone)"
        )
    return lines


def _change_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def _from_change_page(request: HttpRequest) -> bool:
    return request.POST.get("return_to") == "change"


def _back_to_campaign(
    request: HttpRequest, queryset: QuerySet[Campaign]
) -> HttpResponse | None:
    """An action run from a campaign's page lands back on that campaign."""
    if _from_change_page(request):
        campaign = queryset.first()
        if campaign is not None:
            return redirect(_change_url(campaign))
    return None


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
    yield writer.writerow(CSV_COLUMNS)
    for row in rows:
        yield writer.writerow(
            [
                value.isoformat() if hasattr(value, "isoformat") else value
                for value in row
            ]
        )
