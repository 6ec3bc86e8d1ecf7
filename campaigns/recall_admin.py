"""The campaign page's Recall: its confirmation words with the counts it
will touch, and the action's work (campaigns.recall does it)."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from campaigns import recall
from campaigns.models import Campaign, CampaignStatus

# Something may have gone out: a recall has work to do.
RECALLABLE = (
    CampaignStatus.SENDING,
    CampaignStatus.PAUSED,
    CampaignStatus.SENT,
    CampaignStatus.CANCELLED,
)


def recall_label(campaign: Campaign) -> str:
    """One line of the confirmation page: what the recall will touch now."""
    found = recall.campaign_recall_preview(campaign)
    return (
        f"{campaign}: {found['targets']} device(s) that have it will be told "
        f"to remove it, {found['pending']} not yet sent will never be"
    )


def recall_each(
    model_admin: Any, request: HttpRequest, queryset: QuerySet[Campaign]
) -> None:
    for campaign in queryset:
        try:
            totals = recall.campaign_recall(campaign=campaign)
        except ValidationError as exc:
            model_admin.message_user(
                request, f"{campaign}: {'; '.join(exc.messages)}", messages.ERROR
            )
            continue
        model_admin.message_user(
            request,
            f"{campaign}: recalled. {totals['targets']} device(s) are told to "
            f"remove it; {totals['cancelled']} delivery(ies) withdrawn.",
        )


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


def update_page(
    model_admin: Any, request: HttpRequest, queryset: QuerySet[Campaign]
) -> TemplateResponse | None:
    """The form with the count it will touch; on a valid answer, the update."""
    form = UpdateSentForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        for campaign in queryset:
            try:
                totals = recall.campaign_update(
                    campaign=campaign, changes=form.changes()
                )
            except ValidationError as exc:
                model_admin.message_user(
                    request, f"{campaign}: {'; '.join(exc.messages)}", messages.ERROR
                )
                continue
            model_admin.message_user(
                request,
                f"{campaign}: updated. {totals['targets']} device(s) that have it "
                "are sent the new content; the rest will receive it.",
            )
        return None
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Update what was sent",
        "form": form,
        "rows": [(c, recall.campaign_recall_preview(c)) for c in queryset],
        "opts": model_admin.model._meta,
        "action": "update_sent",
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "queryset": queryset,
        "return_to": request.POST.get("return_to", ""),
    }
    return TemplateResponse(request, "admin/campaigns/update_sent.html", context)
