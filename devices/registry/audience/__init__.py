"""Audiences: a validated spec turned into one database query.

The grammar (flat keys, condition trees, segments) is in audience.grammar,
the query in audience.query; docs/api.md ("Audiences") is the contract.
Campaigns, direct pushes, the composer's live count and saved segments all
go through audience_validate and audience_devices.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from devices.models import App, Device, Segment
from devices.registry.audience.grammar import (
    FLAT_KEYS,
    NUL_MESSAGE,
    invalid,
    spec_tree,
    spec_validate,
)
from devices.registry.audience.query import tree_q

# The flat keys a form can show as boxes (the campaign form's fields).
LIST_KEYS = FLAT_KEYS

__all__ = [
    "LIST_KEYS",
    "NUL_MESSAGE",
    "audience_devices",
    "audience_estimate",
    "audience_q",
    "audience_validate",
]


def audience_validate(kind: str, spec: Any) -> dict[str, Any]:
    """Return a clean spec or raise ValidationError naming the bad path."""
    clean = spec_validate(spec)
    if kind == "devices" and not clean.get("device_ids"):
        raise ValidationError({"audience": ["List the device ids to send to."]})
    return clean


def audience_q(app: App, kind: str, spec: dict[str, Any]) -> Q:
    """The condition on the app's devices for a clean spec, its segment
    not included (audience_devices resolves it within the app)."""
    if kind == "all":
        return Q()
    query = Q()
    if spec.get("device_ids"):
        query &= Q(pk__in=spec["device_ids"])
    if kind == "devices":
        return query
    return query & tree_q(spec_tree(spec), app.pk)


def audience_devices(app: App, kind: str, spec: dict[str, Any]) -> QuerySet[Device]:
    """The app's active devices in the audience. A segment is read now, so
    a campaign sends to its segment as it is when it sends."""
    query = audience_q(app, kind, spec)
    if kind != "all" and spec.get("segment") is not None:
        query &= segment_q(app, spec["segment"])
    return Device.objects.filter(query, app=app, is_active=True)


def segment_q(app: App, segment_id: int) -> Q:
    saved = Segment.objects.filter(app=app, pk=segment_id).values("spec").first()
    if saved is None:
        raise invalid("segment", f"No segment {segment_id} in this app.")
    return audience_q(app, "filter", saved["spec"])


def audience_estimate(app: App, kind: str, spec: dict[str, Any]) -> dict[str, int]:
    """Matching and online-now counts, computed by the database."""
    devices = audience_devices(app, kind, spec)
    return {
        "matching": devices.count(),
        "online": devices.filter(node__isnull=False).count(),
    }
