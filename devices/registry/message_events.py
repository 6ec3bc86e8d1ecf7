"""App-reported events about a received push (POST /api/v1/device/events):
counted once per device, message and name (devices.models.MessageEvent)."""

import re
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from devices.models import Delivery, Device, MessageEvent

# A short lowercase word, so counts group cleanly ("crash", "uninstall").
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,39}$")


class UnknownMessage(Exception):
    """The device was never sent this message."""


def message_event_record(
    *, device: Device, message_id: Any, name: str, now: datetime | None = None
) -> bool:
    """Record the event; False when the device had reported it already."""
    if not EVENT_NAME.match(name):
        raise ValidationError(
            {"name": ["Lowercase letters, digits, _ . - (1 to 40), e.g. crash."]}
        )
    if not Delivery.objects.filter(device_id=device.pk, message_id=message_id).exists():
        raise UnknownMessage(message_id)
    _event, created = MessageEvent.objects.get_or_create(
        message_id=message_id,
        device_id=device.pk,
        name=name,
        defaults={"at": now or timezone.now()},
    )
    return created
