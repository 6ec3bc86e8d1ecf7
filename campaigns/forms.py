"""The campaign form: the audience as fields a marketer can fill in."""

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from campaigns import lifecycle
from campaigns.models import Campaign
from devices.models import Platform

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


def _list_field(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        help_text="Comma-separated",
        widget=forms.Textarea(attrs={"rows": 1}),
    )


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
    attributes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='JSON list, e.g. [{"key": "plan", "op": "eq", "value": "pro"}]',
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
            "throttle_per_second",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spec = self.instance.audience or {}
        for name in LIST_FIELDS:
            self.fields[name].initial = ", ".join(spec.get(name, []))
        self.fields["platforms"].initial = spec.get("platforms", [])
        if spec.get("attributes"):
            self.fields["attributes"].initial = json.dumps(spec["attributes"])

    def clean_attributes(self) -> list[Any]:
        text = self.cleaned_data.get("attributes", "").strip()
        if not text:
            return []
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"Not valid JSON: {exc.msg}.") from exc
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        spec: dict[str, Any] = {
            name: _split(cleaned.get(name, "")) for name in LIST_FIELDS
        }
        spec["platforms"] = cleaned.get("platforms", [])
        spec["attributes"] = cleaned.get("attributes") or []
        self.instance.audience = {k: v for k, v in spec.items() if v}
        for name in self.Meta.fields:
            if name in cleaned:
                setattr(self.instance, name, cleaned[name])
        if "app" not in cleaned:
            return cleaned
        try:
            lifecycle.campaign_validate(self.instance)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                target = field if field in self.fields else None
                if target in self.errors:
                    continue  # the field's own error says it already
                for message in messages:
                    self.add_error(target, message)
        return cleaned


class SendTestForm(forms.Form):
    devices = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Device ids or aliases, comma-separated.",
    )


class ScheduleForm(forms.Form):
    send_at = forms.SplitDateTimeField(widget=forms.SplitDateTimeWidget)
