"""Recall and update a sent message (docs/guarantees.md, "Recall and update").

A recall cancels the message's deliveries that are still open (pending or
sent: never written, or written and not confirmed) and sends a *control
message* to every device that may have it: a new delivery in that device's
inbox, with its own seq, whose frame is `recall {id, seq}` (id: the
recalled message). An update rewrites the message row in place (what is
still pending goes out with the new content) and sends `update {id, seq,
title, body, url, image, data}` to every device that may have the old one.

Control messages are ordinary deliveries: written in seq order, replayed to
offline devices when they reconnect, acknowledged and counted like pushes.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from devices.conf import kpns_setting
from devices.delivery import counters, messages, receipts, wakeups
from devices.delivery.enqueue import deliveries_write
from devices.models import Control, Delivery, DeliveryStatus, Message

UPDATABLE = ("title", "body", "url", "image", "data")
# Deliveries whose device may show the message: written to its socket, or
# pending while the device was online at some point since the delivery was
# made (a wake-up may be on its way, or the socket wrote it and its "sent"
# receipt is not flushed yet: KPNS_RECEIPT_FLUSH_SECONDS). Only a pending
# delivery of a device offline since before it was made was surely never
# written. The margin covers clock skew between server processes.
CLOCK_MARGIN = timedelta(seconds=2)
_MAY_HAVE = Q(
    status__in=(DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.OPENED)
) | Q(status=DeliveryStatus.PENDING) & (
    Q(device__node__isnull=False)
    | Q(device__last_seen_at__gte=F("created_at") - CLOCK_MARGIN)
)


@dataclass(frozen=True)
class ControlResult:
    message_id: UUID
    control_id: UUID | None  # the control message, None if no device had it
    cancelled: int  # deliveries that will never be sent
    targets: int  # devices sent the recall or update


def control_targets(message: Message) -> list[UUID]:
    """Devices that may show `message` now, in device order."""
    return list(
        Delivery.objects.filter(_MAY_HAVE, message_id=message.pk)
        .order_by("device_id")
        .values_list("device_id", flat=True)
    )


def recall_preview(message: Message) -> dict[str, int]:
    """What a recall would touch now: for the admin's confirmation page."""
    open_count = Delivery.objects.filter(
        message_id=message.pk, status=DeliveryStatus.PENDING
    ).count()
    return {"targets": len(control_targets(message)), "pending": open_count}


def message_recall(*, message: Message) -> ControlResult:
    """Withdraw a sent message from every device (idempotent per device:
    a device is sent one recall however often it is asked)."""
    _check_recallable(message)
    with transaction.atomic():
        Message.objects.select_for_update().filter(pk=message.pk).first()
        already = set(
            Delivery.objects.filter(
                message__control_of_id=message.pk, message__control=Control.RECALL
            ).values_list("device_id", flat=True)
        )
        targets = [d for d in control_targets(message) if d not in already]
        cancelled = receipts.deliveries_cancel(message_id=message.pk)
        control = _control_send(message, Control.RECALL, targets) if targets else None
    return ControlResult(message.pk, control, cancelled, len(targets))


class RecalledError(ValidationError):
    """An update of a message already recalled: the apps removed it, so
    there is nothing left to rewrite (a 409 in the API)."""


def message_update(*, message: Message, changes: dict[str, Any]) -> ControlResult:
    """Replace some of title, body, url, image, data of a sent message:
    pending deliveries carry the new content, devices that may have the
    old one are sent an update."""
    _check_recallable(message)
    if message.encrypted is not None:
        # The server cannot write content it cannot read (docs/e2ee.md).
        raise ValidationError(
            {"__all__": ["An end-to-end encrypted push cannot be updated."]}
        )
    unknown = set(changes) - set(UPDATABLE)
    if unknown or not changes:
        raise ValidationError(
            {"__all__": [f"Give one or more of {', '.join(UPDATABLE)}."]}
        )
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=message.pk)
        if recalled_any([locked]):
            raise RecalledError({"__all__": ["This message was recalled."]})
        for name, value in changes.items():
            setattr(locked, name, value)
        messages.message_validate(locked)
        locked.save(update_fields=list(changes))
        for name in changes:
            setattr(message, name, getattr(locked, name))
        targets = control_targets(locked)
        control = _control_send(locked, Control.UPDATE, targets) if targets else None
    return ControlResult(message.pk, control, 0, len(targets))


def recalled_any(messages: list[Message]) -> bool:
    """Whether any of the messages was recalled."""
    return Message.objects.filter(
        control_of__in=messages, control=Control.RECALL
    ).exists()


def control_counts(message_id: Any) -> dict[str, int]:
    """Devices that acknowledged a recall or an update of the message."""
    return control_counts_many([message_id])


def control_counts_many(message_ids: list[Any]) -> dict[str, int]:
    """control_counts summed over messages (a campaign's)."""
    found = {"recalled": 0, "updated": 0}
    controls = Message.objects.filter(control_of_id__in=message_ids).values_list(
        "pk", "control"
    )
    for pk, kind in controls:
        name = "recalled" if kind == Control.RECALL else "updated"
        found[name] += counters.message_counts(pk)["delivered"]
    return found


def _check_recallable(message: Message) -> None:
    if message.control:
        raise ValidationError({"__all__": ["A recall or update cannot be changed."]})


def _control_send(message: Message, kind: str, device_ids: list[UUID]) -> UUID:
    ttl = kpns_setting("DEFAULT_TTL_SECONDS")
    control = Message(
        app_id=message.app_id,
        title=message.title if kind == Control.UPDATE else "",
        body=message.body if kind == Control.UPDATE else "",
        url=message.url if kind == Control.UPDATE else "",
        image=message.image if kind == Control.UPDATE else "",
        data=message.data if kind == Control.UPDATE else {},
        priority=message.priority,
        control=kind,
        control_of_id=message.pk,
        expires_at=max(message.expires_at, timezone.now() + timedelta(seconds=ttl)),
    )
    messages.message_validate(control)
    control.save()
    targets = deliveries_write([(control, device_ids)])[control.pk]
    fields = messages.push_fields(control)
    transaction.on_commit(lambda: wakeups.wake_targets(fields, targets))
    return control.pk
