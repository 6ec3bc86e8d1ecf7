"""Messages: content checked once, and the frame fields every push carries.

A message is validated (title, data, priority, encoded size within
KPNS_MAX_PAYLOAD_BYTES) before it is saved; its frame fields
(``push_fields``) are what every device's push frame holds besides its own
seq (docs/protocol.md).
"""

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery.protocol import JSON, inbox_frame
from devices.models import (
    App,
    Control,
    Message,
    Priority,
)

MAX_TTL_SECONDS = 90 * 86400


def message_create(
    *,
    app: App,
    title: str = "",
    body: str = "",
    url: str = "",
    image: str = "",
    data: dict[str, Any] | None = None,
    priority: str = Priority.NORMAL,
    collapse_key: str = "",
    ttl_seconds: int | None = None,
    encrypted: dict[str, str] | None = None,
    wake_mode: str = "",
) -> Message:
    message = message_build(
        app=app,
        title=title,
        body=body,
        url=url,
        image=image,
        data=data,
        priority=priority,
        collapse_key=collapse_key,
        ttl_seconds=ttl_seconds,
        encrypted=encrypted,
        wake_mode=wake_mode,
    )
    message.save()
    return message


def message_build(
    *,
    app: App,
    title: str = "",
    body: str = "",
    url: str = "",
    image: str = "",
    data: dict[str, Any] | None = None,
    priority: str = Priority.NORMAL,
    collapse_key: str = "",
    ttl_seconds: int | None = None,
    encrypted: dict[str, str] | None = None,
    wake_mode: str = "",
) -> Message:
    """A checked, unsaved message (message_create saves it; batches bulk-insert)."""
    ttl = kpns_setting("DEFAULT_TTL_SECONDS") if ttl_seconds is None else ttl_seconds
    message = Message(
        app=app,
        title=title,
        body=body,
        url=url,
        image=image,
        data={} if data is None else data,
        priority=priority,
        collapse_key=collapse_key,
        encrypted=encrypted,
        wake_mode=wake_mode,
        expires_at=timezone.now() + timedelta(seconds=ttl),
    )
    if not 0 <= ttl <= MAX_TTL_SECONDS:
        raise ValidationError(
            {"ttl_seconds": [f"Between 0 and {MAX_TTL_SECONDS} seconds."]}
        )
    message_validate(message)
    return message


def push_fields(message: Message) -> dict[str, Any]:
    """The frame fields of a message except seq (devices.protocol.Push, or
    Recall and Update for a control message, named by a "type" key)."""
    if message.control == Control.RECALL:
        return {"type": "recall", "id": str(message.control_of_id)}
    if message.control == Control.UPDATE:
        return {
            "type": "update",
            "id": str(message.control_of_id),
            "title": message.title,
            "body": message.body,
            "url": message.url,
            "image": message.image,
            "data": message.data,
        }
    return {
        "id": str(message.id),
        "title": message.title,
        "body": message.body,
        "url": message.url,
        "image": message.image,
        "data": message.data,
        "priority": message.priority,
        "collapse_key": message.collapse_key or None,
        "sent_at": ms(message.created_at or timezone.now()),
        "expires_at": ms(message.expires_at),
        "enc": message.encrypted,
    }


def message_validate(message: Message) -> None:
    """Check content and payload size; ValidationError names the field."""
    errors: dict[str, list[str]] = {}
    if message.encrypted is not None:
        # The content is in the ciphertext; only a generic title may show.
        for name in ("body", "url", "image"):
            if getattr(message, name):
                errors[name] = ["Not allowed in an encrypted push: encrypt it."]
        if message.data:
            errors["data"] = ["Not allowed in an encrypted push: encrypt it."]
    elif not message.title.strip() and message.control != Control.RECALL:
        errors["title"] = ["A title is required."]
    if not isinstance(message.data, dict):
        errors["data"] = ["Must be a JSON object."]
    elif _holds_nul(message.data):
        # PostgreSQL's jsonb cannot store U+0000 (it was a 503).
        errors["data"] = ["Strings cannot contain the NUL character (U+0000)."]
    if message.priority not in Priority.values:
        errors["priority"] = [f"One of {', '.join(Priority.values)}."]
    if not errors:
        try:
            encoded = JSON.encode(inbox_frame(0, push_fields(message)))
            assert isinstance(encoded, str)  # the JSON codec writes text frames
            size = len(encoded.encode())
        except ValueError as exc:
            errors["data"] = [f"Not sendable as JSON: {exc}"]
        else:
            limit = kpns_setting("MAX_PAYLOAD_BYTES")
            if size > limit:
                errors["__all__"] = [
                    f"The payload is {size} bytes; the limit is {limit}."
                ]
    if errors:
        raise ValidationError(errors)


def _holds_nul(value: Any) -> bool:
    # Iterative: data 500 deep overflowed the stack here (a 500). The API's
    # parser bounds nesting, but the admin and services call this too.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
