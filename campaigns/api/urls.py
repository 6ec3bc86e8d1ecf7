from django.urls import path

from campaigns.api import segments, templates, views

urlpatterns = [
    path(
        "templates",
        templates.TemplateCollectionView.as_view(),
        name="api-templates",
    ),
    path(
        "templates/<int:template_id>",
        templates.TemplateItemView.as_view(),
        name="api-template",
    ),
    path("campaigns", views.CampaignCollectionView.as_view(), name="api-campaigns"),
    path(
        "campaigns/<int:campaign_id>",
        views.CampaignItemView.as_view(),
        name="api-campaign",
    ),
    path(
        "campaigns/<int:campaign_id>/send",
        views.CampaignSendView.as_view(),
        name="api-campaign-send",
    ),
    path(
        "campaigns/<int:campaign_id>/schedule",
        views.CampaignScheduleView.as_view(),
        name="api-campaign-schedule",
    ),
    path(
        "campaigns/<int:campaign_id>/winner",
        views.CampaignWinnerView.as_view(),
        name="api-campaign-winner",
    ),
    path(
        "campaigns/<int:campaign_id>/pause",
        views.CampaignPauseView.as_view(),
        name="api-campaign-pause",
    ),
    path(
        "campaigns/<int:campaign_id>/resume",
        views.CampaignResumeView.as_view(),
        name="api-campaign-resume",
    ),
    path(
        "campaigns/<int:campaign_id>/promote",
        views.CampaignPromoteView.as_view(),
        name="api-campaign-promote",
    ),
    path(
        "campaigns/<int:campaign_id>/cancel",
        views.CampaignCancelView.as_view(),
        name="api-campaign-cancel",
    ),
    path(
        "campaigns/<int:campaign_id>/stats",
        views.CampaignStatsView.as_view(),
        name="api-campaign-stats",
    ),
    path(
        "campaigns/<int:campaign_id>/results",
        views.CampaignResultsView.as_view(),
        name="api-campaign-results",
    ),
    path("segments", segments.SegmentCollectionView.as_view(), name="api-segments"),
    path(
        "segments/<int:segment_id>",
        segments.SegmentItemView.as_view(),
        name="api-segment",
    ),
    path(
        "segments/<int:segment_id>/estimate",
        segments.SegmentEstimateView.as_view(),
        name="api-segment-estimate",
    ),
]
