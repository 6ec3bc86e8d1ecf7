"""Direct pushes from the server API: targets resolved through audiences.

A push names its devices with exactly one of device_ids, aliases, tags, a
segment or an audience filter (the same spec as campaigns); the
devices are resolved here (the audience grammar is
devices.registry.audience) and the message is sent by
devices.delivery.pushes (committed, then woken).
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet

from devices.conf import kpns_setting
from devices.delivery import caps, messages, pushes
from devices.delivery.groupcommit import Arrival
from devices.models import App, Device, Message
from devices.registry.audience import audience_devices, audience_validate
from devices.registry.keys import encrypted_push_check

TARGET_KINDS = ("device_ids", "aliases", "tags", "audience", "segment")
MAX_TARGET_LIST = 1000
MAX_TARGET_TAGS = 50
# A batch writes its messages in one statement; the cap is checked per push.
BATCH_CAP_ERROR = {
    "respect_frequency_cap": [
        "Not taken in a batch: send pushes that respect the frequency cap "
        "one by one (POST /api/v1/pushes)."
    ]
}


@dataclass(frozen=True)
class PushResult:
    message: Message | None
    targets: int
    errors: dict[str, list[str]] | None = None
    capped: int = 0


def push_targets(*, app: App, targets: dict[str, Any]) -> QuerySet[Device]:
    """The active devices of the app that a push names.

    ``targets`` has exactly one of: device_ids, aliases, tags (any of them),
    audience (an audience spec; {} is every device) or segment (the id of
    a saved segment of the app, read now).
    """
    given = [kind for kind in TARGET_KINDS if targets.get(kind) is not None]
    if len(given) != 1:
        raise ValidationError(
            {NON_FIELD_ERRORS: [f"Give exactly one of {', '.join(TARGET_KINDS)}."]}
        )
    kind = given[0]
    values = targets[kind]
    if kind in ("audience", "segment"):
        spec = values if kind == "audience" else {"segment": values}
        try:
            spec = audience_validate("filter", spec)
            return audience_devices(app, "filter" if spec else "all", spec)
        except ValidationError as exc:
            raise ValidationError({kind: exc.messages}) from exc
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
    try:
        spec = audience_validate("filter", {key: values})
    except ValidationError as exc:
        # Named by the push's own field, not the audience it becomes.
        prefix = f"{key}: "
        raise ValidationError(
            {kind: [m.removeprefix(prefix) for m in exc.messages]}
        ) from exc
    return audience_devices(app, "filter", spec)


def push_send(
    *,
    app: App,
    device_ids: list[Any] | None = None,
    aliases: list[str] | None = None,
    tags: list[str] | None = None,
    audience: dict[str, Any] | None = None,
    segment: int | None = None,
    respect_frequency_cap: bool = False,
    group: Arrival | None = None,
    **content: Any,
) -> PushResult:
    """Send one message to the devices named by exactly one of device_ids,
    aliases, tags, audience or segment. Returns it and the number of devices.

    With respect_frequency_cap, devices at the app's frequency cap are left
    out (counted in `capped`) and the push counts toward the cap; an app
    without a cap sends to all and counts nothing (devices.delivery.caps).

    With `group` (the request's place in devices.delivery.groupcommit) an
    uncapped message is checked here and written in the group's shared
    transaction.

    At most API_MAX_PUSH_DEVICES devices: a larger audience is a campaign,
    which the scheduler sends in chunks. Naming no device is not an error
    (a user may have no device yet): the message is kept with 0 targets.
    """
    targets = {
        "device_ids": device_ids,
        "aliases": aliases,
        "tags": tags,
        "audience": audience,
        "segment": segment,
    }
    if _only_device_ids(targets):
        # No lookup: the enqueue itself keeps only the app's active devices
        # (one round trip less per API push).
        ids: list[Any] = _named_device_ids(device_ids or [])
    else:
        ids = _target_ids(app, targets)
    _check_encrypted(app, targets, ids, content)
    cap = caps.app_cap(app) if respect_frequency_cap else None
    if cap is not None:
        message, count, capped = pushes.push_to_devices_capped(
            app=app, device_ids=ids, cap=cap, **content
        )
        return PushResult(message, count, capped=capped)
    if group is not None:
        message = messages.message_build(app=app, **content)
        count = group.send(app=app, message=message, device_ids=ids)
        return PushResult(message, count)
    message, count = pushes.push_to_devices(app=app, device_ids=ids, **content)
    return PushResult(message, count)


def push_send_batch(*, app: App, items: list[dict[str, Any]]) -> list[PushResult]:
    """Send many pushes, each checked on its own: a bad item is reported and
    the others are sent. The valid ones are written in one transaction
    (devices.delivery.pushes.push_batch), whose enqueue keeps only the app's active
    devices, so pushes naming device_ids need no lookup."""
    results: list[PushResult | None] = [None] * len(items)
    plans: list[tuple[int, Message, list[Any]]] = []
    for index, item in enumerate(items):
        targets = {kind: item.get(kind) for kind in TARGET_KINDS}
        content = {k: v for k, v in item.items() if k not in TARGET_KINDS}
        if content.pop("respect_frequency_cap", False):
            results[index] = PushResult(None, 0, BATCH_CAP_ERROR)
            continue
        try:
            if _only_device_ids(targets):
                ids = _named_device_ids(targets["device_ids"] or [])
            else:
                ids = _target_ids(app, targets)
            _check_encrypted(app, targets, ids, content)
            message = messages.message_build(app=app, **content)
        except ValidationError as exc:
            results[index] = PushResult(None, 0, _errors(exc))
            continue
        plans.append((index, message, ids))
    counts = pushes.push_batch(app=app, plans=[(m, ids) for _i, m, ids in plans])
    for (index, message, _ids), count in zip(plans, counts, strict=True):
        results[index] = PushResult(message, count)
    return [result for result in results if result is not None]


def _check_encrypted(
    app: App, targets: dict[str, Any], ids: list[Any], content: dict[str, Any]
) -> None:
    """An encrypted push goes to one device named by id, at its current key
    (devices.registry.keys); plain pushes pass untouched."""
    encrypted = content.get("encrypted")
    if encrypted is None:
        return
    if targets.get("device_ids") is None:
        raise ValidationError(
            {"device_ids": ["An encrypted push names its one device by id."]}
        )
    encrypted_push_check(app=app, device_ids=ids, kid=encrypted["kid"])


def _target_ids(app: App, targets: dict[str, Any]) -> list[Any]:
    """The ids of the devices a push names, at most API_MAX_PUSH_DEVICES."""
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
    return ids


def _only_device_ids(targets: dict[str, Any]) -> bool:
    given = [kind for kind in TARGET_KINDS if targets.get(kind) is not None]
    values = targets.get("device_ids")
    return (
        given == ["device_ids"]
        and isinstance(values, list)
        and 0 < len(values) <= MAX_TARGET_LIST
    )


def _named_device_ids(values: list[Any]) -> list[UUID]:
    """The distinct device ids a push names, in order; 400 if one is not a UUID."""
    try:
        return list(dict.fromkeys(UUID(str(v)) for v in values))
    except ValueError as exc:
        raise ValidationError({"device_ids": ["Device ids (UUIDs)."]}) from exc


def _errors(exc: ValidationError) -> dict[str, list[str]]:
    return exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
