"""Saved segments in the console: built like a campaign's audience, with a
live count; the list counts each segment on demand (its page's script asks
the composer's estimate endpoint, one segment at a time), not in the list's
own query. Rules are campaigns.segments'."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from campaigns import segments
from campaigns.builder import AudienceBuilderField, builder_text
from campaigns.models import Campaign
from devices.admin import GuardedModelAdmin
from devices.models import Segment


class SegmentForm(forms.ModelForm):
    audience_json = AudienceBuilderField(
        label="Conditions",
        help_text="Groups of conditions; what is filled in applies.",
    )

    class Meta:
        model = Segment
        fields = ["app", "name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["audience_json"].initial = builder_text(self.instance.spec or {})
        if self.instance.pk:  # a segment stays in its app
            self.fields["app"].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.instance.spec = cleaned.get("audience_json") or {}
        try:
            self.instance.spec = segments.segment_spec_validate(self.instance.spec)
            if self.instance.pk and "audience_json" in self.changed_data:
                segments.segment_edit_check(self.instance)
        except ValidationError as exc:
            self.add_error("audience_json", exc.messages)
        return cleaned


@admin.register(Segment)
class SegmentAdmin(GuardedModelAdmin):
    form = SegmentForm
    change_form_template = "admin/devices/segment/change_form.html"
    change_list_template = "admin/devices/segment/change_list.html"
    fields = ["app", "name", "description", "audience_json"]
    list_display = ["name", "app", "waiting_campaigns", "devices_now", "updated_at"]
    list_filter = ["app"]
    search_fields = ["name", "description"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Segment]:
        waiting = Q(campaigns__status__in=segments.UNFINISHED)
        return (
            super()
            .get_queryset(request)
            .select_related("app")
            .annotate(n_waiting=Count("campaigns", filter=waiting))
        )

    @admin.display(description="campaigns not sent yet", ordering="n_waiting")
    def waiting_campaigns(self, segment: Segment) -> int:
        return getattr(segment, "n_waiting", 0)

    @admin.display(description="devices (matching / online now)")
    def devices_now(self, segment: Segment) -> str:
        url = reverse("admin:campaign-estimate")
        query = f"?app={segment.app_id}&audience_kind=filter&segment={segment.pk}"
        return format_html(
            '<span class="kpns-segment-count" data-url="{}">…</span>', url + query
        )

    def save_model(
        self, request: HttpRequest, obj: Segment, form: Any, change: bool
    ) -> None:
        fields = {
            "name": obj.name,
            "description": obj.description,
            "spec": obj.spec,
        }
        try:
            if change:
                saved = segments.segment_update(segment=obj, **fields)
            else:
                saved = segments.segment_create(
                    app=obj.app, created_by=request.user, **fields
                )
        except ValidationError as exc:
            # A campaign started sending since the form was checked.
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return
        obj.pk, obj.created_at, obj.updated_at = (
            saved.pk,
            saved.created_at,
            saved.updated_at,
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """What deleting takes: the segments; what stops it: the campaigns
        not sent yet that use them (sent ones keep their record)."""
        chosen = list(objs)
        waiting = Campaign.objects.filter(
            segment__in=chosen, status__in=segments.UNFINISHED
        )
        protected = [
            f"Campaign “{c.name}” ({c.get_status_display()}) uses it: change "
            "its audience or cancel it first"
            for c in waiting
        ]
        names = [f"Segment: {segment}" for segment in chosen]
        return names, {"segments": len(chosen)}, set(), protected

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        try:
            segments.segment_delete(segment=obj)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[Segment]
    ) -> None:
        for segment in queryset:
            self.delete_model(request, segment)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Segment | None = None,
    ) -> Any:
        context["estimate_url"] = reverse("admin:campaign-estimate")
        if obj is not None:
            context["waiting"] = segments.segment_campaigns(obj)
            context["new_campaign_url"] = (
                reverse("admin:campaigns_campaign_add")
                + f"?app={obj.app_id}&audience_kind=filter&segment={obj.pk}"
            )
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )
