"""The composer's canary rollout fields (campaigns.canary): the waves as
"1, 10, 100" and the hold as "1h"; the rules are canary.waves_validate's."""

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

CANARY_FORM_FIELDS = [
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
]


class WavesField(forms.CharField):
    """Cumulative percentages, comma-separated; empty: no waves."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(str(percent) for percent in value)
        return value

    def to_python(self, value: Any) -> list[int]:  # type: ignore[override]
        text = super().to_python(value) or ""
        parts = [part.strip().rstrip("%") for part in text.split(",") if part.strip()]
        try:
            return [int(part) for part in parts]
        except ValueError as exc:
            raise ValidationError(
                "Whole percentages separated by commas, e.g. 1, 10, 100."
            ) from exc
