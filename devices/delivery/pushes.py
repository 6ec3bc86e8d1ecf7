"""Direct pushes: a message to chosen devices, committed first, then woken."""

import logging
from collections import defaultdict
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

from django.db import connection, transaction

from devices.delivery import caps, dberrors, messages, wakeups
from devices.delivery.caps import FrequencyCap
from devices.delivery.enqueue import deliveries_write
from devices.models import App, Device, Message

logger = logging.getLogger(__name__)


def push_to_devices(
    *, app: App, device_ids: Iterable[Any], **content: Any
) -> tuple[Message, int]:
    """Send one message to devices of one app. Returns it and the targets count."""
    message = messages.message_build(app=app, **content)
    (count,) = push_batch_apps([(app, message, list(device_ids))])
    return message, count


def push_to_devices_capped(
    *, app: App, device_ids: Iterable[Any], cap: FrequencyCap, **content: Any
) -> tuple[Message, int, int]:
    """push_to_devices under the app's frequency cap: devices at the cap
    are left out, and the push counts toward it for the others
    (devices.delivery.caps). Returns it, the targets and the capped count."""
    ids = list(dict.fromkeys(device_ids))
    with transaction.atomic():
        message = messages.message_create(app=app, **content)
        now = message.created_at
        caps.devices_lock(ids)
        capped = caps.capped_devices(ids, cap=cap, now=now)
        sendable = [i for i in ids if i not in capped]
        targets = deliveries_write([(message, sendable)])[message.pk]
        caps.pushes_record([t.device_id for t in targets], now=now)
        fields = messages.push_fields(message)
        transaction.on_commit(lambda: wakeups.wake_targets(fields, targets))
    _log_push(message, app, targets)
    return message, len(targets), len(capped)


def _log_push(message: Message, app: App, targets: list[Any]) -> None:
    logger.info(
        "push committed",
        extra={
            "message_id": str(message.pk),
            "app_id": app.pk,
            "targets": len(targets),
        },
    )


def push_batch(*, app: App, plans: list[tuple[Message, list[Any]]]) -> list[int]:
    """Many checked, unsaved messages of one app, each to its own devices:
    saved with their deliveries in one transaction, woken after it commits
    with one layer event per node. Returns each message's targets count."""
    return push_batch_apps([(app, message, ids) for message, ids in plans])


def push_batch_apps(plans: list[tuple[App, Message, list[Any]]]) -> list[int]:
    """Checked, unsaved messages of any apps, each to its own devices: one
    transaction (one message INSERT, then one seq UPDATE and one delivery
    INSERT per app), woken after it commits with one layer event per node
    (devices.delivery.groupcommit writes concurrent requests' pushes so).
    Returns each message's targets count, in order."""
    if not plans:
        return []
    if connection.in_atomic_block:
        return _push_batch_write(plans)

    def attempt() -> list[int]:
        for _app, message, _ids in plans:
            message._state.adding = True  # a rolled-back INSERT marked it saved
        return _push_batch_write(plans)

    # Device rows are locked in the order of each statement's plan (a
    # campaign chunk's in table order, a few devices' in id order), so a
    # push can lose a deadlock: it is a whole transaction, run again.
    return dberrors.retry_conflicts(attempt, what="push write")


def _push_batch_write(plans: list[tuple[App, Message, list[Any]]]) -> list[int]:
    by_app: dict[int, list[tuple[Message, list[Any]]]] = defaultdict(list)
    for app, message, ids in plans:
        by_app[app.pk].append((message, ids))
    # One app's messages without collapse keys are one statement on
    # PostgreSQL: atomic on its own, so no BEGIN and COMMIT round trips.
    alone = (
        connection.vendor == "postgresql"
        and len(by_app) == 1
        and not any(m.collapse_key for _a, m, _ids in plans)
    )
    with nullcontext() if alone else transaction.atomic():
        found: dict[Any, list[Any]] = {}
        for app_plans in by_app.values():
            found.update(deliveries_write(app_plans, new_messages=True))
        batch = [(messages.push_fields(m), found[m.pk]) for _a, m, _ids in plans]
        # Run at once when there is no transaction (the statement committed).
        transaction.on_commit(lambda: wakeups.wake_batch_soon(batch))
    if logger.isEnabledFor(logging.INFO):
        for app, message, _ids in plans:
            logger.info(
                "push committed",
                extra={
                    "message_id": str(message.pk),
                    "app_id": app.pk,
                    "targets": len(found[message.pk]),
                },
            )
    return [len(found[message.pk]) for _app, message, _ids in plans]


def push_test(*, devices: Iterable[Device], title: str, body: str = "") -> int:
    """The admin's "Send test push": one message per app of the chosen devices."""
    by_app: dict[int, list[Any]] = defaultdict(list)
    apps: dict[int, App] = {}
    for device in devices:
        by_app[device.app_id].append(device.pk)
        apps[device.app_id] = device.app
    total = 0
    for app_id, ids in by_app.items():
        _message, count = push_to_devices(
            app=apps[app_id], device_ids=ids, title=title, body=body, ttl_seconds=3600
        )
        total += count
    return total
