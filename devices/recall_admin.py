"""Recall and update in the admin, for anything that sent pushes: the
confirmation line with the counts a recall will touch, the recall itself,
and the update form above the same counts. A ``ControlTarget`` says how to
preview, recall and update one of its objects (a message here, a campaign
in campaigns.recall_admin); the services do the work
(devices.delivery.recall)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from devices.delivery import recall

Counts = dict[str, int]


class UpdateSentForm(forms.Form):
    """The new content; a field left empty keeps what was sent."""

    title = forms.CharField(max_length=200, required=False)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    url = forms.URLField(max_length=1000, required=False, label="Link")
    image = forms.URLField(max_length=1000, required=False, label="Image URL")

    def changes(self) -> dict[str, str]:
        return {k: v for k, v in self.cleaned_data.items() if v}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not any(cleaned.values()):
            raise ValidationError("Give at least one new value.")
        return cleaned


@dataclass(frozen=True)
class ControlTarget:
    # What a recall would touch now: {"targets", "pending"}.
    preview: Callable[[Any], Counts]
    # Do it; what was done: {"targets", "cancelled"}.
    recall: Callable[[Any], Counts]
    update: Callable[[Any, dict[str, Any]], Counts]

    def recall_label(self, obj: Any) -> str:
        """One line of the confirmation page: what the recall will touch now."""
        found = self.preview(obj)
        return (
            f"{obj}: {found['targets']} device(s) that have it will be told "
            f"to remove it, {found['pending']} not yet sent will never be"
        )

    def recall_each(
        self, model_admin: Any, request: HttpRequest, queryset: QuerySet
    ) -> None:
        for obj in queryset:
            try:
                totals = self.recall(obj)
            except ValidationError as exc:
                _refused(model_admin, request, obj, exc)
                continue
            model_admin.message_user(
                request,
                f"{obj}: recalled. {totals['targets']} device(s) are told to "
                f"remove it; {totals['cancelled']} delivery(ies) withdrawn.",
            )

    def update_page(
        self, model_admin: Any, request: HttpRequest, queryset: QuerySet
    ) -> TemplateResponse | None:
        """The form with the counts it will touch; on a valid answer, the update."""
        form = UpdateSentForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for obj in queryset:
                try:
                    totals = self.update(obj, form.changes())
                except ValidationError as exc:
                    _refused(model_admin, request, obj, exc)
                    continue
                model_admin.message_user(
                    request,
                    f"{obj}: updated. {totals['targets']} device(s) that have it "
                    "are sent the new content; the rest will receive it.",
                )
            return None
        context = {
            **model_admin.admin_site.each_context(request),
            "title": "Update what was sent",
            "form": form,
            "rows": [(obj, self.preview(obj)) for obj in queryset],
            "opts": model_admin.model._meta,
            "action": "update_sent",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "queryset": queryset,
            "return_to": request.POST.get("return_to", ""),
        }
        return TemplateResponse(request, "admin/kpns/update_sent.html", context)


def _refused(
    model_admin: Any, request: HttpRequest, obj: Any, exc: ValidationError
) -> None:
    model_admin.message_user(
        request, f"{obj}: {'; '.join(exc.messages)}", messages.ERROR
    )


def _result(result: recall.ControlResult) -> Counts:
    return {"targets": result.targets, "cancelled": result.cancelled}


MESSAGES = ControlTarget(
    preview=recall.recall_preview,
    recall=lambda message: _result(recall.message_recall(message=message)),
    update=lambda message, changes: _result(
        recall.message_update(message=message, changes=changes)
    ),
)
