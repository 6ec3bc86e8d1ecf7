"""The composer's personalised preview: content rendered for a sample
device, as campaigns.personalize will render it when the campaign is sent.

Reads only; the admin's preview endpoint (campaigns.template_admin) calls
`preview_for` with what is on the screen.
"""

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from campaigns import personalize
from campaigns.lifecycle import audience_check
from devices.conf import kpns_setting
from devices.models import App, Device
from devices.registry.audience import audience_devices, audience_validate


def sample_device(
    app: App,
    *,
    wanted: str = "",
    kind: str = "all",
    spec: dict[str, Any] | None = None,
    after: str = "",
) -> Device | None:
    """The device named by id or alias, or else a random device of the
    audience (of the app, if the audience is not valid yet): the first
    after a random id, so it costs one index lookup at any size. `after`
    picks the next one instead ("another device")."""
    devices = app.devices.filter(is_active=True)
    wanted = wanted.strip()
    if wanted:
        named = Q(alias=wanted)
        if _is_uuid(wanted):
            named |= Q(pk=wanted)
        return devices.filter(named).order_by("pk").first()
    audience = _audience(app, kind, spec or {}) or devices
    pivot = uuid.UUID(after) if _is_uuid(after) else uuid.uuid4()
    return (
        audience.filter(pk__gt=pivot).order_by("pk").first()
        or audience.order_by("pk").first()
    )


def preview_for(fields: dict[str, Any], device: Device | None) -> dict[str, Any]:
    """The content a device is sent, its size, and which device it is.

    Content that does not pass the save-time checks answers with the
    errors per field instead (the same messages Save would show).
    """
    try:
        personalize.content_validate(fields)
    except ValidationError as exc:
        return {"errors": exc.message_dict}
    values = personalize.device_values(device) if device is not None else {}
    rendered = personalize.render_values(fields, values)
    return {
        "content": rendered,
        "bytes": personalize.push_bytes(rendered),
        "limit": kpns_setting("MAX_PAYLOAD_BYTES"),
        "personalised": personalize.has_placeholders(fields),
        "device": None if device is None else _describe(device),
    }


def _describe(device: Device) -> dict[str, Any]:
    return {
        "id": str(device.pk),
        "alias": device.alias,
        "platform": device.platform,
        "locale": device.locale,
        "label": device.alias or f"{device.platform} {str(device.pk)[:8]}",
    }


def _audience(app: App, kind: str, spec: dict[str, Any]) -> QuerySet[Device] | None:
    try:
        clean = audience_validate(kind, spec)
        audience_check(kind, clean)
        return audience_devices(app, kind, clean)  # reads its segment
    except ValidationError:
        return None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
