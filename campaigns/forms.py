"""The campaign form: the audience as fields a marketer can fill in.

Times are shown and taken in the marketer's zone (campaigns.timezones); a
local-time campaign's send time is a wall-clock time, kept as UTC.
"""

import json
import zoneinfo
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns import lifecycle, variant_forms
from campaigns.builder import AudienceBuilderField, builder_spec, builder_text
from campaigns.canary_forms import CANARY_FORM_FIELDS, WavesField
from campaigns.durations import duration_format, duration_parse
from campaigns.models import AudienceKind, Campaign
from campaigns.pacing import PACING_FIELDS
from campaigns.variant_forms import content_formsets
from devices.delivery import caps
from devices.models import Platform, Segment

UTC = zoneinfo.ZoneInfo("UTC")
PLACEHOLDER_HELP = (
    'Placeholders: {{ first_name|default:"there" }} is filled from each '
    "device (alias, locale, platform, app_version, timezone, or an attribute); "
    "filters: default, upper, lower, title, capfirst, truncate:N."
)
# The A/B test's own fields (campaigns.abtest); its variants and languages
# are sub-forms (campaigns.variant_forms).
AB_FIELDS = ["split_percent", "test_percent", "winner_metric", "winner_window_seconds"]

LIST_FIELDS = {
    "tags_any": "Tags: any of",
    "tags_all": "Tags: all of",
    "tags_none": "Tags: none of",
    "locales": "Locales",
    "app_versions": "App versions",
    "aliases": "Aliases (user ids)",
    "device_ids": "Device ids",
}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def audience_spec(
    cleaned: dict[str, Any], attributes: list[Any] | None = None
) -> dict[str, Any]:
    """The audience spec from the form's fields (empty ones left out): the
    builder's conditions, the saved segment, and the flat boxes a script
    may still post (tags_any=vip), all of them applying."""
    spec: dict[str, Any] = {
        name: _split(cleaned.get(name) or "") for name in LIST_FIELDS
    }
    spec["platforms"] = list(cleaned.get("platforms") or [])
    spec["attributes"] = attributes or []
    spec = {k: v for k, v in spec.items() if v}
    built = cleaned.get("audience_json") or {}
    if isinstance(built, str):
        built = builder_spec(built)
    twice = sorted(set(spec) & set(built))
    if twice:
        raise ValidationError(f"{twice[0]} is given twice: in its box and here.")
    spec.update(built)
    segment = cleaned.get("segment")
    if isinstance(segment, Segment):
        spec["segment"] = segment.pk
    elif segment:  # the live count's query
        if not str(segment).isdigit():
            raise ValidationError("Choose a saved segment.")
        spec["segment"] = int(segment)
    return spec


class SegmentChoiceField(forms.ModelChoiceField):
    """The app's saved segments (each option names its app, for the script
    that shows only the chosen app's)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            queryset=Segment.objects.select_related("app"),
            required=False,
            empty_label="— none —",
            help_text="Its conditions apply when the campaign sends, with any below.",
            **kwargs,
        )
        self.widget = SegmentSelect()

    def label_from_instance(self, obj: Segment) -> str:
        return obj.name


class SegmentSelect(forms.Select):
    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        option = super().create_option(name, value, *args, **kwargs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"]["data-app"] = str(instance.app_id)
        return option


PACING_CHOICES = ("frequency_cap_mode", "quiet_hours_mode", "quiet_hours_action")


class DurationField(forms.CharField):
    """Seconds, written and shown as 7d, 12h, 30m, 1d 12h (or plain seconds)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, int):
            return duration_format(value)
        return value

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().to_python(value)
        return duration_parse(text) if text else None


def _list_field(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        help_text="Comma-separated",
        widget=forms.Textarea(attrs={"rows": 1}),
    )


class DataField(forms.JSONField):
    """A JSON object; empty (shown empty, not "null" or "{}") is none."""

    def prepare_value(self, value: Any) -> Any:
        if value in (None, {}, ""):
            return ""
        return super().prepare_value(value)


class CampaignForm(forms.ModelForm):
    tags_any = _list_field(LIST_FIELDS["tags_any"])
    tags_all = _list_field(LIST_FIELDS["tags_all"])
    tags_none = _list_field(LIST_FIELDS["tags_none"])
    locales = _list_field(LIST_FIELDS["locales"])
    app_versions = _list_field(LIST_FIELDS["app_versions"])
    aliases = _list_field(LIST_FIELDS["aliases"])
    device_ids = _list_field(LIST_FIELDS["device_ids"])
    platforms = forms.MultipleChoiceField(
        choices=Platform.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    segment = SegmentChoiceField(label="Saved segment")
    audience_json = AudienceBuilderField()
    attributes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='JSON list, e.g. [{"key": "plan", "op": "eq", "value": "pro"}]',
    )
    data = DataField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Extra keys for the app, a JSON object: {"coupon": "FLASH30"}. '
        "Empty is none.",
    )
    ttl_seconds = DurationField(
        label="Expires after",
        initial=7 * 86400,
        help_text="Offline devices get it until then: 7d, 12h, 30m, 1d 12h.",
        widget=forms.TextInput(attrs={"size": 10}),
    )
    winner_window_seconds = DurationField(
        label="Choose the winner after",
        required=False,
        initial=2 * 3600,
        help_text="From the start, with a test group: 2h, 30m, 1d.",
        widget=forms.TextInput(attrs={"size": 10}),
    )
    wave_percents = WavesField(
        label="Waves (cumulative %)",
        required=False,
        help_text="Send in waves, e.g. 1, 10, 100: each judged before the "
        "next. Empty: everyone at once.",
    )
    wave_hold_seconds = DurationField(
        label="Hold each wave for",
        required=False,
        initial=3600,
        help_text="Watched this long after it is sent, then judged: 1h, 30m.",
        widget=forms.TextInput(attrs={"size": 10}),
    )
    frequency_cap_window_seconds = forms.TypedChoiceField(
        label="Per",
        choices=[("", "—"), *caps.WINDOW_CHOICES],
        coerce=int,
        empty_value=None,
        required=False,
        help_text="A rolling window, counted back from each send.",
    )
    confirm_everyone = forms.BooleanField(
        required=False,
        label="Yes, send to every device",
        help_text="“All devices of the app” reaches everyone: tick to confirm.",
    )

    class Meta:
        model = Campaign
        fields = [
            "app",
            "name",
            "title",
            "body",
            "url",
            "image",
            "data",
            "audience_kind",
            "send_at",
            "local_time",
            "ttl_seconds",
            "priority",
            "collapse_key",
            "wake_mode",
            "throttle_per_second",
            *PACING_FIELDS,
            *AB_FIELDS,
            *CANARY_FORM_FIELDS,
        ]
        widgets = {
            "quiet_hours_start": forms.TimeInput(attrs={"type": "time"}),
            "quiet_hours_end": forms.TimeInput(attrs={"type": "time"}),
            "frequency_cap_mode": forms.RadioSelect,
            "quiet_hours_mode": forms.RadioSelect,
            "quiet_hours_action": forms.RadioSelect,
        }
        help_texts = {"title": PLACEHOLDER_HELP}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spec = self.instance.audience or {}
        if self.instance.local_time and self.instance.send_at:
            # The wall-clock time, shown as it was written, in any zone.
            wall = timezone.make_naive(self.instance.send_at, UTC)
            self.initial["send_at"] = timezone.make_aware(wall)
        for name in LIST_FIELDS:
            self.fields[name].initial = ", ".join(spec.get(name, []))
        self.fields["platforms"].initial = spec.get("platforms", [])
        # Left out of a post (an older form, a script): the model's default.
        for name in PACING_CHOICES:
            if name in self.fields:
                self.fields[name].required = False
        if spec.get("attributes"):
            self.fields["attributes"].initial = json.dumps(spec["attributes"])
        # The page shows the builder: every condition is in it.
        self.fields["audience_json"].initial = builder_text(spec)
        if "segment" in self.fields:  # not on a sent campaign's page
            self.fields["segment"].initial = spec.get("segment")
        for name in [*LIST_FIELDS, "attributes"]:
            if name != "device_ids":
                self.fields[name].initial = None
        # A/B variants and language versions: sub-forms checked with it.
        self.variant_forms, self.language_forms = content_formsets(
            self.instance, self.data if self.is_bound else None
        )
        self.variants: list[dict[str, Any]] | None = None
        self.languages: list[dict[str, Any]] | None = None
        for name in [*AB_FIELDS, *CANARY_FORM_FIELDS]:
            if name in self.fields:
                self.fields[name].required = False

    def clean_attributes(self) -> list[Any]:
        text = self.cleaned_data.get("attributes", "").strip()
        if not text:
            return []
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"Not valid JSON: {exc.msg}.") from exc
        return value

    def _clean_choice(self, name: str) -> str:
        value = self.cleaned_data.get(name)
        return value or Campaign._meta.get_field(name).get_default()

    def clean_frequency_cap_mode(self) -> str:
        return self._clean_choice("frequency_cap_mode")

    def clean_quiet_hours_mode(self) -> str:
        return self._clean_choice("quiet_hours_mode")

    def clean_quiet_hours_action(self) -> str:
        return self._clean_choice("quiet_hours_action")

    def clean_data(self) -> Any:
        value = self.cleaned_data.get("data")
        return {} if value in (None, "") else value

    def clean_split_percent(self) -> int:
        return self._clean_default("split_percent")

    def clean_winner_metric(self) -> str:
        return self._clean_choice("winner_metric")

    def clean_winner_window_seconds(self) -> int:
        return self._clean_default("winner_window_seconds")

    def clean_wave_hold_seconds(self) -> int:
        return self._clean_default("wave_hold_seconds")

    def clean_canary_action(self) -> str:
        return self._clean_choice("canary_action")

    def _clean_default(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        if value is None:
            return Campaign._meta.get_field(name).get_default()
        return value

    def _clean_content_forms(self) -> bool:
        """Read the posted sub-forms; False when one has an error."""
        valid = True
        for formset, attribute in (
            (self.variant_forms, "variants"),
            (self.language_forms, "languages"),
        ):
            if not variant_forms.posted(formset):
                continue  # not on the post: the stored rows stay
            if formset.is_valid():
                setattr(self, attribute, variant_forms.rows(formset))
            else:
                valid = False
        if not valid:
            self.add_error(None, "Correct the variants and languages below.")
        return valid

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("local_time") and cleaned.get("send_at"):
            # Taken as written: 09:00 means 09:00 in each device's zone.
            wall = timezone.make_naive(cleaned["send_at"])
            cleaned["send_at"] = timezone.make_aware(wall, UTC)
        try:
            self.instance.audience = audience_spec(cleaned, cleaned.get("attributes"))
        except ValidationError as exc:
            self.add_error("audience_json", exc)
            return cleaned
        for name in self.Meta.fields:
            if name in cleaned:
                setattr(self.instance, name, cleaned[name])
        if "app" not in cleaned:
            return cleaned
        if not self._clean_content_forms():
            return cleaned
        checks = [
            lambda: lifecycle.campaign_validate(
                self.instance, variants=self.variants, languages=self.languages
            )
        ]
        if "send_at" in cleaned:
            checks.append(
                lambda: lifecycle.send_at_check(
                    cleaned["send_at"], local_time=bool(cleaned.get("local_time"))
                )
            )
        for check in checks:
            try:
                check()
            except ValidationError as exc:
                self._add_service_errors(exc)
        self._ask_about_everyone(cleaned)
        return cleaned

    def _ask_about_everyone(self, cleaned: dict[str, Any]) -> None:
        """Everyone, chosen now, is confirmed with a tick (and said so)."""
        if cleaned.get("audience_kind") != AudienceKind.ALL or self.errors:
            return
        chosen = self.instance._state.adding or "audience_kind" in self.changed_data
        if chosen and not cleaned.get("confirm_everyone"):
            count = self.instance.app.devices.filter(is_active=True).count()
            self.add_error(
                "confirm_everyone",
                f"This campaign goes to every device of the app ({count}). "
                "Tick to confirm, or choose “Devices matching a filter”.",
            )

    def _add_service_errors(self, exc: ValidationError) -> None:
        for field, messages in exc.message_dict.items():
            for message in messages:
                target = field if field in self.fields else None
                if field in ("variants", "languages"):
                    message = f"{field.capitalize()}: {message}"
                if field == "audience":
                    # The builder shows every condition (the flat boxes a
                    # script posts included); device ids have their box.
                    target = "device_ids" if "device id" in message else "audience_json"
                if target in self.errors:
                    continue  # the field's own error says it already
                self.add_error(target, message)


class SendTestForm(forms.Form):
    devices = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Device ids or aliases, comma-separated.",
    )


class ScheduleForm(forms.Form):
    send_at = forms.SplitDateTimeField(widget=forms.SplitDateTimeWidget)


class PacingPreviewForm(forms.ModelForm):
    """The pacing fields being typed, for the composer's live explanation
    (values that do not parse are left at their defaults)."""

    class Meta:
        model = Campaign
        fields = PACING_FIELDS

    def typed(self) -> dict[str, Any]:
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {
            name: cleaned[name]
            for name in PACING_FIELDS
            if cleaned.get(name) not in (None, "")
        }
