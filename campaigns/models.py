"""Campaigns: what marketers write, target, schedule and follow.

A campaign sends one devices.Message per distinct content: its variants
(an A/B test), their language versions and per-device personalisation make
several (campaigns.content, recorded as CampaignMessage). Its audience is
sent in slices (one per time zone for local-time campaigns, else one),
each advanced chunk by chunk with a cursor, so a crash resumes exactly where
the last committed chunk ended (docs/architecture.md).
"""

from django.conf import settings
from django.db import models

from devices.models import App, Device, Message, Priority, WakeMode


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"  # a canary's waves held (campaigns.canary)
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class AudienceKind(models.TextChoices):
    ALL = "all", "All devices of the app"
    FILTER = "filter", "Devices matching a filter"
    DEVICES = "devices", "An explicit list of devices"


class FrequencyCapMode(models.TextChoices):
    APP = "app", "The app's cap"
    CUSTOM = "custom", "A cap of its own"
    EXEMPT = "exempt", "Exempt: not capped and not counted"


class QuietHoursMode(models.TextChoices):
    APP = "app", "The app's quiet hours"
    CUSTOM = "custom", "Quiet hours of its own"
    OFF = "off", "None: send at any hour"


class QuietHoursAction(models.TextChoices):
    DEFER = "defer", "Wait until they end"
    SKIP = "skip", "Skip those devices"


class WinnerMetric(models.TextChoices):
    OPENED = "opened", "Open rate"
    DELIVERED = "delivered", "Delivery rate"


class CanaryAction(models.TextChoices):
    PAUSE = "pause", "Pause"
    ABORT = "abort", "Abort (cancel the rest)"


class Campaign(models.Model):
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    # Content
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.URLField(max_length=1000, blank=True)
    image = models.URLField(max_length=1000, blank=True, verbose_name="image URL")
    data = models.JSONField(default=dict, blank=True)
    # Audience: see devices.registry.audience for the filter's keys.
    audience_kind = models.CharField(
        max_length=10, choices=AudienceKind.choices, default=AudienceKind.ALL
    )
    audience = models.JSONField(default=dict, blank=True)
    # The saved segment audience["segment"] names, kept in step with it by
    # campaigns.segments: a segment a campaign will still send to cannot
    # be deleted (the database refuses too).
    segment = models.ForeignKey(
        "devices.Segment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
    )
    # Schedule: send_at is absolute, unless local_time is set, in which case
    # its wall-clock date and time apply in each device's own time zone.
    send_at = models.DateTimeField(null=True, blank=True)
    local_time = models.BooleanField(
        default=False,
        help_text="Send at the wall-clock time of send_at in each device's time zone.",
    )
    # Delivery options
    ttl_seconds = models.PositiveIntegerField(default=7 * 86400)
    priority = models.CharField(
        max_length=8, choices=Priority.choices, default=Priority.NORMAL
    )
    collapse_key = models.CharField(max_length=64, blank=True)
    wake_mode = models.CharField(
        max_length=12,
        choices=WakeMode.choices,
        blank=True,
        help_text="Devices reached through FCM or APNs: a visible notification "
        "or a data-only wake-up. Empty: the app's setting.",
    )
    throttle_per_second = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many deliveries per second."
    )
    # Pacing (campaigns.pacing): the app's frequency cap and quiet hours,
    # or the campaign's own.
    frequency_cap_mode = models.CharField(
        max_length=8,
        choices=FrequencyCapMode.choices,
        default=FrequencyCapMode.APP,
        verbose_name="frequency cap",
    )
    frequency_cap_count = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="at most (pushes)"
    )
    frequency_cap_window_seconds = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="per"
    )
    quiet_hours_mode = models.CharField(
        max_length=8,
        choices=QuietHoursMode.choices,
        default=QuietHoursMode.APP,
        verbose_name="quiet hours",
    )
    quiet_hours_start = models.TimeField(null=True, blank=True, verbose_name="from")
    quiet_hours_end = models.TimeField(null=True, blank=True, verbose_name="until")
    quiet_hours_action = models.CharField(
        max_length=8,
        choices=QuietHoursAction.choices,
        default=QuietHoursAction.DEFER,
        verbose_name="during quiet hours",
    )
    # A/B test (campaigns.abtest): the campaign's own content is variant A,
    # with split_percent of the audience; CampaignVariant rows are B to E.
    # With a test group, the variants go to test_percent of the audience
    # first and the winner, chosen after winner_window_seconds (or by hand),
    # to the rest.
    split_percent = models.PositiveSmallIntegerField(
        default=100, verbose_name="variant A share (%)"
    )
    test_percent = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        verbose_name="test group (%)",
        help_text="Send the variants to this share of the audience first, "
        "then the winner to the rest. Empty: the variants split everyone.",
    )
    winner_metric = models.CharField(
        max_length=10, choices=WinnerMetric.choices, default=WinnerMetric.OPENED
    )
    winner_window_seconds = models.PositiveIntegerField(
        default=2 * 3600, verbose_name="choose the winner after"
    )
    winner = models.CharField(max_length=1, blank=True, editable=False)
    winner_reason = models.TextField(blank=True, editable=False)
    winner_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Canary rollout (campaigns.canary): waves of cumulative audience shares
    # (e.g. [1, 10, 100]), each judged after wave_hold_seconds against the
    # thresholds; a wave that crosses one pauses or aborts the campaign.
    wave_percents = models.JSONField(
        default=list, blank=True, verbose_name="waves (cumulative %)"
    )
    wave_hold_seconds = models.PositiveIntegerField(
        default=3600, verbose_name="hold each wave for"
    )
    canary_min_delivery_rate = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name="minimum delivery rate (%)"
    )
    canary_min_open_rate = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name="minimum open rate (%)"
    )
    canary_max_error_rate = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name="maximum error rate (%)"
    )
    canary_max_optout_rate = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name="maximum opt-out rate (%)"
    )
    # Devices whose socket the server closed 4429 (too slow) or 4400
    # (protocol errors) after their push was written (Device.bad_close_at).
    canary_max_close_rate = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name="maximum 4429/4400 close rate (%)"
    )
    # An app-reported event (POST /api/v1/device/events), e.g. "crash".
    canary_event_name = models.CharField(
        max_length=40, blank=True, verbose_name="app event"
    )
    canary_max_event_rate = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name="maximum app event rate (%)"
    )
    canary_action = models.CharField(
        max_length=8,
        choices=CanaryAction.choices,
        default=CanaryAction.ABORT,
        verbose_name="when a wave crosses a threshold",
    )
    # On abort (by the judge or by hand), recall what the waves delivered
    # (campaigns.recall), not only cancel what they have not.
    canary_recall_on_abort = models.BooleanField(
        default=False, verbose_name="recall what was sent when aborted"
    )
    # The last wave released (0-based), when its sending ended (the hold
    # starts then), and the last verdict in words.
    wave = models.PositiveSmallIntegerField(default=0, editable=False)
    wave_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    canary_reason = models.TextField(blank=True, editable=False)
    # When the judge last paused or aborted it: the campaign page shows the
    # reason's time in the marketer's zone (campaigns.canary_console).
    canary_verdict_at = models.DateTimeField(null=True, blank=True, editable=False)
    canary_auto_paused = models.BooleanField(default=False, editable=False)
    # Lifecycle
    status = models.CharField(
        max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    failure_reason = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["app", "status"], name="campaign_app_status")]

    def __str__(self) -> str:
        return self.name


class CampaignSlice(models.Model):
    """The part of a campaign's audience due at one moment (one time zone)."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="slices"
    )
    # "" for a campaign sent at one absolute time; else an IANA zone name.
    timezone = models.CharField(max_length=64, blank=True)
    due_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # Devices online when the slice starts are sent first, so a campaign to
    # a million mostly offline devices reaches the online ones in seconds;
    # the second pass enqueues everyone else (repeats are skipped).
    online_pass = models.BooleanField(default=True)
    # Keyset position in the audience ordered by device id, within the pass.
    cursor = models.CharField(max_length=36, blank=True)
    next_chunk_at = models.DateTimeField()
    done = models.BooleanField(default=False)
    # Quiet hours (campaigns.pacing): when the zone's devices were made to
    # wait until, and how many were then sent; or, in skip mode, that the
    # rest of the slice is recorded as skipped instead of sent.
    deferred_until = models.DateTimeField(null=True, blank=True)
    deferred = models.PositiveIntegerField(default=0)
    skipping = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "timezone"], name="uniq_campaign_slice_tz"
            )
        ]
        indexes = [models.Index(fields=["done", "next_chunk_at"], name="slice_due_idx")]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.timezone or 'all'}"


class MessageTemplate(models.Model):
    """Saved content a campaign can start from (its fields are copied).

    Title, body and data's string values may hold placeholders
    (campaigns.placeholders), checked when it is saved.
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=200)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.URLField(max_length=1000, blank=True)
    image = models.URLField(max_length=1000, blank=True, verbose_name="image URL")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "template"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["app", "name"], name="uniq_template_name")
        ]

    def __str__(self) -> str:
        return self.name


class ExclusionReason(models.TextChoices):
    CAPPED = "capped", "Capped"  # at its frequency cap
    SKIPPED = "skipped", "Skipped"  # in quiet hours, skip mode


class CampaignExclusion(models.Model):
    """A device of the audience that this campaign did not send to, and why.

    Written in the chunk's transaction; one per (campaign, device), so a
    device met again (the second pass, a zone change) is neither counted
    twice nor sent later. The counts in the stats are these rows.
    """

    # Indexed by the unique constraint, which leads with it; the stats
    # count a campaign's rows by reason through it.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="exclusions", db_index=False
    )
    device = models.ForeignKey(
        Device,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    reason = models.CharField(max_length=8, choices=ExclusionReason.choices)
    at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "device"], name="uniq_campaign_exclusion"
            )
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.device_id} {self.reason}"


class CampaignVariant(models.Model):
    """Variant B to E of an A/B test (A is the campaign's own content)."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="variants"
    )
    key = models.CharField(max_length=1)
    split_percent = models.PositiveSmallIntegerField(verbose_name="share (%)")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.URLField(max_length=1000, blank=True)
    image = models.URLField(max_length=1000, blank=True, verbose_name="image URL")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "key"], name="uniq_campaign_variant"
            )
        ]

    def __str__(self) -> str:
        return f"Variant {self.key}"


class CampaignLanguage(models.Model):
    """A variant's content in one language; blank fields keep the variant's.

    A device whose locale matches no version gets the variant's own content
    (the fallback language); "fr" matches "fr-CA" (campaigns.content).
    """

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="languages"
    )
    variant = models.CharField(max_length=1, default="A")
    locale = models.CharField(max_length=16)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.URLField(max_length=1000, blank=True)
    image = models.URLField(max_length=1000, blank=True, verbose_name="image URL")

    class Meta:
        ordering = ["variant", "locale"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "variant", "locale"],
                name="uniq_campaign_language",
            )
        ]

    def __str__(self) -> str:
        return f"{self.variant} {self.locale}"


class CampaignMessage(models.Model):
    """One message a campaign sent: a wave, a variant, a language, one content.

    Made by the sender the first time a device needs that content
    (campaigns.content); stats, cancel and results read a campaign's
    messages through these rows.
    """

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="sent_messages"
    )
    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, related_name="campaign_link"
    )
    variant = models.CharField(max_length=1, default="A")
    # The language version chosen; "" is the variant's own (fallback).
    locale = models.CharField(max_length=16, blank=True)
    content_hash = models.CharField(max_length=64)
    # A canary rollout's wave (0-based; 0 without waves): a message per
    # wave, so a wave's counts are its messages' counters (campaigns.canary).
    wave = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "wave", "variant", "locale", "content_hash"],
                name="uniq_campaign_wave_content",
            )
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.variant}:{self.locale or '-'}"
