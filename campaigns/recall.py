"""Recall or update every message a campaign sent (devices.delivery.recall).

A campaign has one message per canary wave, variant and language
(CampaignMessage); each is recalled or updated on its own devices.
"""

from typing import Any

from django.db import transaction

from campaigns import lifecycle
from campaigns.models import Campaign, CampaignStatus
from devices.delivery import recall
from devices.models import Message


def campaign_messages(campaign: Campaign) -> list[Message]:
    return list(
        Message.objects.filter(campaign_link__campaign=campaign).order_by("created_at")
    )


def campaign_control_counts(campaign: Campaign) -> dict[str, int]:
    """Devices that acknowledged a recall or an update of the campaign."""
    return recall.control_counts_many([m.pk for m in campaign_messages(campaign)])


def campaign_recall_preview(campaign: Campaign) -> dict[str, int]:
    """What a recall would touch now, summed over the campaign's messages."""
    total = {"messages": 0, "targets": 0, "pending": 0}
    for message in campaign_messages(campaign):
        found = recall.recall_preview(message)
        total["messages"] += 1
        total["targets"] += found["targets"]
        total["pending"] += found["pending"]
    return total


# A campaign still going out is cancelled first: no later chunk or wave
# may send what is being recalled.
_STILL_SENDING = (
    CampaignStatus.SCHEDULED,
    CampaignStatus.SENDING,
    CampaignStatus.PAUSED,
)


def campaign_recall(*, campaign: Campaign) -> dict[str, int]:
    """Recall each message; the totals of what was cancelled and told."""
    _check_sent(campaign)
    with transaction.atomic():
        if campaign.status in _STILL_SENDING:
            # Sending stops; the deliveries stay open for message_recall,
            # which tells the devices that have one before cancelling it
            # (cancelled first, a push written but not yet acknowledged
            # was never recalled).
            lifecycle.campaign_cancel(campaign=campaign, withdraw=False)
        messages = campaign_messages(campaign)
        results = [recall.message_recall(message=m) for m in messages]
    return _totals(results)


def campaign_update(*, campaign: Campaign, changes: dict[str, Any]) -> dict[str, int]:
    """Apply the same changes to each message (every variant and language)."""
    _check_sent(campaign)
    messages = campaign_messages(campaign)
    # Checked for all before any is rewritten: a refusal changes nothing.
    if recall.recalled_any(messages):
        raise lifecycle.CampaignStateError({"status": ["This campaign was recalled."]})
    results = [recall.message_update(message=m, changes=changes) for m in messages]
    return _totals(results)


def _totals(results: list[recall.ControlResult]) -> dict[str, int]:
    return {
        "messages": len(results),
        "cancelled": sum(r.cancelled for r in results),
        "targets": sum(r.targets for r in results),
    }


def _check_sent(campaign: Campaign) -> None:
    if campaign.status == CampaignStatus.DRAFT or not campaign_messages(campaign):
        raise lifecycle.CampaignStateError(
            {"status": ["Nothing of this campaign was sent yet."]}
        )
