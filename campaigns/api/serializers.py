from typing import Any

from rest_framework import serializers

from campaigns.models import (
    AudienceKind,
    Campaign,
    CampaignStatus,
    CanaryAction,
    FrequencyCapMode,
    QuietHoursAction,
    QuietHoursMode,
    WinnerMetric,
)
from devices.api.serializers import (
    ChannelSplitSerializer,
    DeliveryCountsSerializer,
    StrictSerializer,
)
from devices.delivery import caps
from devices.delivery.messages import MAX_TTL_SECONDS
from devices.models import DeliveryStatus, Platform, Priority, Segment, WakeMode


class VariantSerializer(StrictSerializer):
    key = serializers.ChoiceField(choices=["B", "C", "D", "E"])
    split_percent = serializers.IntegerField(min_value=1, max_value=99)
    title = serializers.CharField(max_length=200)
    body = serializers.CharField(required=False, allow_blank=True, max_length=4096)
    url = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    image = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    data = serializers.DictField(required=False)


class LanguageSerializer(StrictSerializer):
    variant = serializers.ChoiceField(
        choices=["A", "B", "C", "D", "E"],
        required=False,
        help_text="The variant it translates (default A).",
    )
    locale = serializers.CharField(
        max_length=16, help_text='"fr" serves fr, fr-CA, fr_BE ...'
    )
    title = serializers.CharField(max_length=200)
    body = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=4096,
        help_text="Blank: the variant's own.",
    )
    url = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    image = serializers.URLField(required=False, allow_blank=True, max_length=1000)


class VariantReadSerializer(serializers.Serializer):
    key = serializers.CharField()
    split_percent = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    url = serializers.CharField()
    image = serializers.CharField()
    data = serializers.DictField()


class LanguageReadSerializer(serializers.Serializer):
    variant = serializers.CharField()
    locale = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    url = serializers.CharField()
    image = serializers.CharField()


class CampaignSerializer(serializers.ModelSerializer):
    message_id = serializers.UUIDField(
        read_only=True,
        allow_null=True,
        help_text="Variant A's own content as written; a campaign with "
        "variants, languages or placeholders sends more messages.",
    )
    variants = VariantReadSerializer(many=True, read_only=True)
    languages = LanguageReadSerializer(many=True, read_only=True)
    # Plain strings: "" (none) is not a URI.
    url = serializers.CharField(read_only=True)
    image = serializers.CharField(read_only=True)
    wake_mode = serializers.ChoiceField(
        choices=WakeMode.choices,
        allow_blank=True,
        read_only=True,
        help_text='"": the app\'s setting.',
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "title",
            "body",
            "url",
            "image",
            "data",
            "audience_kind",
            "audience",
            "segment",
            "send_at",
            "local_time",
            "ttl_seconds",
            "priority",
            "collapse_key",
            "wake_mode",
            "throttle_per_second",
            "frequency_cap_mode",
            "frequency_cap_count",
            "frequency_cap_window_seconds",
            "quiet_hours_mode",
            "quiet_hours_start",
            "quiet_hours_end",
            "quiet_hours_action",
            "split_percent",
            "variants",
            "languages",
            "test_percent",
            "winner_metric",
            "winner_window_seconds",
            "winner",
            "winner_reason",
            "winner_at",
            "wave_percents",
            "wave_hold_seconds",
            "canary_min_delivery_rate",
            "canary_min_open_rate",
            "canary_max_error_rate",
            "canary_max_optout_rate",
            "canary_max_close_rate",
            "canary_event_name",
            "canary_max_event_rate",
            "canary_action",
            "canary_recall_on_abort",
            "wave",
            "wave_sent_at",
            "canary_reason",
            "canary_verdict_at",
            "status",
            "message_id",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
            "failure_reason",
        ]
        read_only_fields = fields


class CampaignWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    template = serializers.IntegerField(
        required=False,
        help_text="A saved template's id: its content (title, body, url, image, "
        "data) is copied; fields given here win over it.",
    )
    title = serializers.CharField(
        max_length=200,
        required=False,
        help_text="Required unless `template` gives it. Title, body and data's "
        "string values may hold placeholders (docs/api.md).",
    )
    body = serializers.CharField(required=False, allow_blank=True, max_length=4096)
    url = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    image = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    data = serializers.DictField(required=False)
    audience_kind = serializers.ChoiceField(
        choices=AudienceKind.choices, required=False
    )
    audience = serializers.DictField(
        required=False, help_text="The audience spec; see the docs."
    )
    segment = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="A saved segment's id, written into audience.segment (null "
        "removes it). Without audience_kind, the audience becomes a filter.",
    )
    send_at = serializers.DateTimeField(required=False, allow_null=True)
    local_time = serializers.BooleanField(required=False)
    ttl_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_TTL_SECONDS
    )
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    collapse_key = serializers.CharField(
        required=False, allow_blank=True, max_length=64
    )
    wake_mode = serializers.ChoiceField(
        choices=WakeMode.choices,
        required=False,
        allow_blank=True,
        help_text="Devices reached through FCM or APNs: a visible notification "
        "or a data-only wake-up. Default: the app's setting.",
    )
    throttle_per_second = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1_000_000
    )
    frequency_cap_mode = serializers.ChoiceField(
        choices=FrequencyCapMode.choices,
        required=False,
        help_text="app (default): the app's cap; custom: frequency_cap_count "
        "per frequency_cap_window_seconds; exempt: neither capped nor counted.",
    )
    frequency_cap_count = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=caps.MAX_COUNT
    )
    frequency_cap_window_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=int(caps.MIN_WINDOW.total_seconds()),
        max_value=int(caps.MAX_WINDOW.total_seconds()),
    )
    quiet_hours_mode = serializers.ChoiceField(
        choices=QuietHoursMode.choices,
        required=False,
        help_text="app (default): the app's quiet hours; custom: "
        "quiet_hours_start to quiet_hours_end; off: none.",
    )
    quiet_hours_start = serializers.TimeField(
        required=False,
        allow_null=True,
        help_text="HH:MM in each device's own time zone.",
    )
    quiet_hours_end = serializers.TimeField(required=False, allow_null=True)
    quiet_hours_action = serializers.ChoiceField(
        choices=QuietHoursAction.choices,
        required=False,
        help_text="defer (default): a zone in quiet hours is sent when they "
        "end there; skip: its devices are skipped.",
    )
    split_percent = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=100,
        help_text="Variant A's share (the campaign's own content); with the "
        "variants' shares it adds up to 100.",
    )
    variants = VariantSerializer(
        many=True,
        required=False,
        help_text="Variants B to E of an A/B test; replaces the stored ones.",
    )
    languages = LanguageSerializer(
        many=True,
        required=False,
        help_text="Language versions of the variants; replaces the stored ones.",
    )
    test_percent = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=99,
        help_text="Send the variants to this share of the audience first and "
        "the winner to the rest; null: the variants split everyone.",
    )
    winner_metric = serializers.ChoiceField(
        choices=WinnerMetric.choices, required=False
    )
    winner_window_seconds = serializers.IntegerField(
        required=False, min_value=60, max_value=MAX_TTL_SECONDS
    )

    wave_percents = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        required=False,
        max_length=10,
        help_text="A canary rollout: cumulative shares of the audience, one "
        "per wave, the last 100 (e.g. [1, 10, 100]); [] sends to everyone "
        "at once.",
    )
    wave_hold_seconds = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_TTL_SECONDS,
        help_text="How long each wave is watched before it is judged.",
    )
    canary_min_delivery_rate = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    canary_min_open_rate = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    canary_max_error_rate = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    canary_max_optout_rate = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    canary_max_close_rate = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=100,
        help_text="The most of a wave's devices, in percent of sent, whose "
        "socket the server may close 4429 (too slow) or 4400 (protocol "
        "errors) after their push was written.",
    )
    canary_event_name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=40,
        help_text="An app-reported event (POST /api/v1/device/events), e.g. "
        "crash; judged with canary_max_event_rate.",
    )
    canary_max_event_rate = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    canary_action = serializers.ChoiceField(
        choices=CanaryAction.choices, required=False
    )
    canary_recall_on_abort = serializers.BooleanField(
        required=False,
        help_text="When the campaign is aborted (by its judge or cancelled), "
        "also recall it from the devices its waves reached.",
    )

    def validate_variants(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"body": "", "url": "", "image": "", "data": {}, **variant}
            for variant in value
        ]

    def validate_languages(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"variant": "A", "body": "", "url": "", "image": "", **version}
            for version in value
        ]


class WaveResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="0-based")
    percent = serializers.IntegerField(help_text="cumulative share at its end")
    released = serializers.BooleanField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="expired or dropped")
    opted_out = serializers.IntegerField(
        help_text="devices unregistered after the push was written to them"
    )
    delivery_rate = serializers.FloatField(allow_null=True)
    open_rate = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField(allow_null=True)
    optout_rate = serializers.FloatField(allow_null=True)
    events = serializers.IntegerField(
        help_text="devices that reported the campaign's app event"
    )
    event_rate = serializers.FloatField(allow_null=True)
    closed = serializers.IntegerField(
        help_text="devices whose socket the server closed 4429 or 4400 after "
        "the push was written to them"
    )
    close_rate = serializers.FloatField(allow_null=True)


class WinnerSerializer(StrictSerializer):
    variant = serializers.ChoiceField(choices=["A", "B", "C", "D", "E"])


class VariantResultSerializer(serializers.Serializer):
    key = serializers.CharField()
    split_percent = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    delivered_rate = serializers.FloatField(
        allow_null=True, help_text="delivered / sent"
    )
    opened_rate = serializers.FloatField(
        allow_null=True, help_text="opened / delivered"
    )
    difference = serializers.FloatField(
        allow_null=True,
        help_text="This variant's rate minus A's on the test's metric; null for A.",
    )
    z = serializers.FloatField(allow_null=True)
    significant = serializers.BooleanField(
        help_text="Two-proportion z-test against A at 95% (docs/api.md)."
    )
    verdict = serializers.CharField()


class BreakdownSerializer(serializers.Serializer):
    targeted = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()


class CampaignListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=CampaignStatus.choices, required=False)


class ScheduleSerializer(StrictSerializer):
    send_at = serializers.DateTimeField(
        required=False, help_text="Default: the campaign's own send_at."
    )


class TimelinePointSerializer(serializers.Serializer):
    t = serializers.DateTimeField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()


class PacingCountsSerializer(serializers.Serializer):
    capped = serializers.IntegerField(
        help_text="Devices left out: at their frequency cap."
    )
    deferred = serializers.IntegerField(
        help_text="Devices sent when quiet hours ended in their zone."
    )
    skipped = serializers.IntegerField(
        help_text="Devices left out: in quiet hours, skip mode."
    )


class PlatformBreakdownSerializer(serializers.Serializer):
    targeted = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()


class StatsQuerySerializer(serializers.Serializer):
    breakdown = serializers.ChoiceField(
        choices=["platform"],
        required=False,
        help_text="platform: add `platforms`, counted over the campaign's "
        "delivery rows (on demand only).",
    )


class CampaignStatsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=CampaignStatus.choices)
    stats = DeliveryCountsSerializer()
    pacing = PacingCountsSerializer()
    channels = ChannelSplitSerializer()
    timeline = TimelinePointSerializer(many=True)
    variants = VariantResultSerializer(many=True)
    languages = serializers.DictField(
        child=BreakdownSerializer(),
        help_text='Per language version sent ("" is the variants\' own).',
    )
    platforms = serializers.DictField(
        child=PlatformBreakdownSerializer(),
        required=False,
        help_text="Per platform, with ?breakdown=platform only.",
    )
    waves = WaveResultSerializer(
        many=True, help_text="A canary rollout's waves (empty without waves)."
    )
    recalled = serializers.IntegerField(
        help_text="Devices that acknowledged a recall of the campaign."
    )
    updated = serializers.IntegerField(
        help_text="Acknowledged updates of the campaign (one per device and update)."
    )


class ResultsQuerySerializer(serializers.Serializer):
    device_id = serializers.UUIDField(required=False)


class CampaignResultSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    alias = serializers.CharField()
    platform = serializers.ChoiceField(choices=Platform.choices)
    seq = serializers.IntegerField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    sent_at = serializers.DateTimeField(
        source="send_time", help_text="When the campaign sent it to this device."
    )
    delivered_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    variant = serializers.CharField(help_text="A to E.")
    language = serializers.CharField(
        help_text='The language version sent; "" for the variant\'s own.'
    )


class SegmentSerializer(serializers.ModelSerializer):
    audience = serializers.JSONField(
        source="spec", help_text="The audience spec (docs/api.md, Audiences)."
    )

    class Meta:
        model = Segment
        fields = ["id", "name", "description", "audience", "created_at", "updated_at"]
        read_only_fields = fields


class SegmentWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=2000
    )
    audience = serializers.DictField(
        help_text="An audience spec with at least one condition and no segment."
    )


class SegmentEstimateSerializer(serializers.Serializer):
    matching = serializers.IntegerField(help_text="Active devices in it now.")
    online = serializers.IntegerField(help_text="Of those, connected now.")


class SegmentListQuerySerializer(serializers.Serializer):
    name = serializers.CharField(
        required=False, max_length=100, help_text="Only the segment of this name."
    )
