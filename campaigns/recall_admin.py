"""The campaign page's Recall: its confirmation words with the counts it
will touch, and the action's work (campaigns.recall does it)."""

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

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
