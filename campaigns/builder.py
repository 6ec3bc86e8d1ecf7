"""The audience builder of the console: a JSON box that the admin's script
(devices/static/kpns/audience-builder.js) turns into groups of conditions,
each a field, an operator typed for it and a value (docs/console.md).

What the script offers comes from the grammar itself (builder_fields), so
the builder never offers what the validator refuses.
"""

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from devices.models import Platform
from devices.registry.audience.grammar import FIELDS, OP_LABELS, spec_tree

# A tag is had or not, not equal to something.
TAG_LABELS = {
    "eq": "has",
    "ne": "has not",
    "in": "has any of",
    "not_in": "has none of",
    "all": "has all of",
}
# What the builder does not show: they have boxes of their own.
OWN_BOXES = ("segment", "device_ids")


def builder_fields() -> dict[str, Any]:
    return {
        "fields": {
            name: {
                "label": field.label,
                "values": field.values,
                "ops": [
                    [op, (TAG_LABELS if name == "tag" else OP_LABELS)[op]]
                    for op in field.ops
                ],
            }
            for name, field in FIELDS.items()
        },
        "platforms": [list(choice) for choice in Platform.choices],
    }


def builder_text(spec: dict[str, Any]) -> str:
    """A spec's conditions as the builder's JSON: {"where": tree}."""
    rest = {k: v for k, v in (spec or {}).items() if k not in OWN_BOXES}
    if not rest:
        return ""
    if set(rest) == {"where"}:
        return json.dumps(rest)
    tree = spec_tree(rest)
    for part in tree["all"]:  # flat "exists" conditions carried a value
        if part.get("op") == "exists":
            part.pop("value", None)
    return json.dumps({"where": tree})


def builder_spec(text: str | None) -> dict[str, Any]:
    """The builder's JSON read back: an object, or {} for an empty box."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"Not valid JSON: {exc.msg}.") from exc
    if not isinstance(value, dict):
        raise ValidationError("Must be a JSON object.")
    return value


class AudienceBuilderWidget(forms.Textarea):
    """The JSON box, which the script shows as the builder (the box stays,
    folded, as the advanced view)."""

    class Media:
        css = {"all": ["kpns/audience-builder.css"]}
        js = ["kpns/audience-builder.js"]

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            {
                "rows": 4,
                "class": "kpns-audience-json",
                "data-builder": json.dumps(builder_fields()),
                **(attrs or {}),
            }
        )


class AudienceBuilderField(forms.CharField):
    widget = AudienceBuilderWidget

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Conditions")
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dict[str, Any]:  # type: ignore[override]
        return builder_spec(super().to_python(value))

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return builder_text(value)
        return value
