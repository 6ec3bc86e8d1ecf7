"""The campaign page's Recall and Update: devices.recall_admin's
confirmation flow, on every message of the campaign (campaigns.recall)."""

from campaigns import recall
from campaigns.models import CampaignStatus
from devices.recall_admin import ControlTarget

# Something may have gone out: a recall has work to do.
RECALLABLE = (
    CampaignStatus.SENDING,
    CampaignStatus.PAUSED,
    CampaignStatus.SENT,
    CampaignStatus.CANCELLED,
)

CAMPAIGNS = ControlTarget(
    preview=recall.campaign_recall_preview,
    recall=lambda campaign: recall.campaign_recall(campaign=campaign),
    update=lambda campaign, changes: recall.campaign_update(
        campaign=campaign, changes=changes
    ),
)
recall_label = CAMPAIGNS.recall_label
recall_each = CAMPAIGNS.recall_each
update_page = CAMPAIGNS.update_page
