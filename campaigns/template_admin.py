"""Saved templates in the admin, and the personalised preview endpoint the
composer (campaign and template pages) calls. Thin: the rules are in
campaigns.saved_templates, campaigns.personalize and campaigns.preview."""

import json
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html

from campaigns import preview, saved_templates
from campaigns.forms import PLACEHOLDER_HELP, DataField, audience_spec
from campaigns.models import MessageTemplate
from devices.admin import GuardedModelAdmin
from devices.models import App


class MessageTemplateForm(forms.ModelForm):
    data = DataField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="A JSON object; its string values may hold placeholders: "
        '{"greeting": "{{ first_name }}"}. Empty is none.',
    )

    class Meta:
        model = MessageTemplate
        fields = ["app", "name", "title", "body", "url", "image", "data"]
        help_texts = {"title": PLACEHOLDER_HELP}

    def clean_data(self) -> Any:
        value = self.cleaned_data.get("data")
        return {} if value in (None, "") else value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "app" not in cleaned:
            return cleaned
        for name in self.Meta.fields:
            if name in cleaned:
                setattr(self.instance, name, cleaned[name])
        try:
            saved_templates.template_validate(self.instance)
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                target = field if field in self.fields else None
                for problem in problems:
                    if target not in self.errors:
                        self.add_error(target, problem)
        return cleaned


@admin.register(MessageTemplate)
class MessageTemplateAdmin(GuardedModelAdmin):
    form = MessageTemplateForm
    change_form_template = "admin/campaigns/messagetemplate/change_form.html"
    list_display = ["name", "app", "title", "updated_at", "start_campaign"]
    list_filter = ["app"]
    search_fields = ["name", "title", "body"]

    @admin.display(description="")
    def start_campaign(self, template: MessageTemplate) -> str:
        return format_html(
            '<a class="button" href="{}">Start a campaign</a>',
            campaign_from_template_url(template),
        )

    def save_model(
        self, request: HttpRequest, obj: MessageTemplate, form: Any, change: bool
    ) -> None:
        fields = {name: getattr(obj, name) for name in saved_templates.TEMPLATE_FIELDS}
        if change:
            saved_templates.template_update(template=obj, **fields)
        else:
            created = saved_templates.template_create(app=obj.app, **fields)
            obj.pk = created.pk

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: MessageTemplate | None = None,
    ) -> Any:
        context["preview_url"] = reverse("admin:campaign-preview")
        if obj is not None:
            context["start_campaign_url"] = campaign_from_template_url(obj)
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "preview.json",
                self.admin_site.admin_view(self.preview_view),
                name="campaign-preview",
            )
        ]
        return own + super().get_urls()

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The content on the screen rendered for a sample device: the one
        named (id or alias), else a random device of the audience."""
        if not (
            self.has_view_permission(request)
            or request.user.has_perm("campaigns.view_campaign")
        ):
            raise PermissionDenied
        query = request.GET
        app = App.objects.filter(pk=_int(query.get("app"))).first()
        if app is None:
            return JsonResponse({"errors": {"app": ["Choose the app first."]}})
        try:
            data = json.loads(query.get("data") or "{}")
            attributes = json.loads(query.get("attributes") or "[]")
        except json.JSONDecodeError:
            return JsonResponse({"errors": {"data": ["Not valid JSON."]}})
        if data is None:
            data = {}  # an empty JSON box renders as null
        if not isinstance(data, dict):
            return JsonResponse({"errors": {"data": ["Must be a JSON object."]}})
        fields = {name: query.get(name, "") for name in ("title", "body", "url")}
        fields.update(image=query.get("image", ""), data=data)
        try:
            spec = audience_spec(
                {**query.dict(), "platforms": query.getlist("platforms")},
                attributes if isinstance(attributes, list) else [],
            )
        except ValidationError:
            spec = {}  # not valid yet: a device of the app
        wanted = query.get("device", "")
        device = preview.sample_device(
            app,
            wanted=wanted,
            kind=query.get("audience_kind") or "all",
            spec=spec,
            after=query.get("after", ""),
        )
        body = preview.preview_for(fields, device)
        if device is None:
            body["note"] = (
                f"No device {wanted!r} in this app" if wanted else "No device matches"
            ) + ": shown with each placeholder's default."
        return JsonResponse(body)


def campaign_from_template_url(template: MessageTemplate) -> str:
    """The campaign composer, filled with the template's content."""
    query = urlencode({"template": template.pk})
    return f"{reverse('admin:campaigns_campaign_add')}?{query}"


def _int(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None
