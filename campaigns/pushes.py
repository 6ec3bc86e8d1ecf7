"""Direct pushes from the server API: targets resolved through audiences.

A push names its devices with exactly one of device_ids, aliases, tags or
an audience filter (the same spec as campaigns, campaigns.audience); the
devices are resolved here and the message is sent by devices.pushes
(committed, then woken). It lives in campaigns because audiences do:
devices never imports campaigns.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import QuerySet

from campaigns.audience import audience_devices, audience_validate
from devices import pushes
from devices.conf import kpns_setting
from devices.models import App, Device, Message

TARGET_KINDS = ("device_ids", "aliases", "tags", "audience")
MAX_TARGET_LIST = 1000
MAX_TARGET_TAGS = 50


@dataclass(frozen=True)
class PushResult:
    message: Message | None
    targets: int
    errors: dict[str, list[str]] | None = None


def push_targets(*, app: App, targets: dict[str, Any]) -> QuerySet[Device]:
    """The active devices of the app that a push names.

    ``targets`` has exactly one of: device_ids, aliases, tags (any of them),
    or audience (a campaigns.audience filter spec; {} is every device).
    """
    given = [kind for kind in TARGET_KINDS if targets.get(kind) is not None]
    if len(given) != 1:
        raise ValidationError(
            {NON_FIELD_ERRORS: [f"Give exactly one of {', '.join(TARGET_KINDS)}."]}
        )
    kind = given[0]
    values = targets[kind]
    if kind == "audience":
        try:
            spec = audience_validate("filter", values)
        except ValidationError as exc:
            raise ValidationError({"audience": exc.messages}) from exc
        return audience_devices(app, "filter" if spec else "all", spec)
    limit = MAX_TARGET_TAGS if kind == "tags" else MAX_TARGET_LIST
    if not isinstance(values, list) or not values or len(values) > limit:
        raise ValidationError({kind: [f"A list of 1 to {limit} values."]})
    if kind == "device_ids":
        try:
            spec = {"device_ids": [str(UUID(str(v))) for v in values]}
        except ValueError as exc:
            raise ValidationError({kind: ["Device ids (UUIDs)."]}) from exc
        return audience_devices(app, "devices", spec)
    key = "aliases" if kind == "aliases" else "tags_any"
    return audience_devices(app, "filter", audience_validate("filter", {key: values}))


def push_send(
    *,
    app: App,
    device_ids: list[Any] | None = None,
    aliases: list[str] | None = None,
    tags: list[str] | None = None,
    audience: dict[str, Any] | None = None,
    **content: Any,
) -> tuple[Message, int]:
    """Send one message to the devices named by exactly one of device_ids,
    aliases, tags or audience. Returns it and the number of devices.

    At most API_MAX_PUSH_DEVICES devices: a larger audience is a campaign,
    which the scheduler sends in chunks. Naming no device is not an error
    (a user may have no device yet): the message is kept with 0 targets.
    """
    targets = {
        "device_ids": device_ids,
        "aliases": aliases,
        "tags": tags,
        "audience": audience,
    }
    limit = kpns_setting("API_MAX_PUSH_DEVICES")
    ids = list(
        push_targets(app=app, targets=targets)
        .order_by()
        .values_list("pk", flat=True)[: limit + 1]
    )
    if len(ids) > limit:
        raise ValidationError(
            {
                NON_FIELD_ERRORS: [
                    f"Matches more than {limit} devices: send a campaign to "
                    "audiences this large."
                ]
            }
        )
    return pushes.push_to_devices(app=app, device_ids=ids, **content)


def push_send_batch(*, app: App, items: list[dict[str, Any]]) -> list[PushResult]:
    """Send many pushes, each on its own: one failing leaves the others sent."""
    results = []
    for item in items:
        try:
            with transaction.atomic():
                message, count = push_send(app=app, **item)
        except ValidationError as exc:
            results.append(PushResult(None, 0, _errors(exc)))
        else:
            results.append(PushResult(message, count))
    return results


def _errors(exc: ValidationError) -> dict[str, list[str]]:
    return exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
