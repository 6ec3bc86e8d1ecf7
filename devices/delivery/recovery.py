"""The queries of a node's sweep for deliveries whose wake-up was lost
(devices.delivery.node, docs/architecture.md "Lost wake-ups")."""

from datetime import datetime
from uuid import UUID

from django.db.models import Min
from django.utils import timezone

from devices.delivery.sqlvalues import in_values
from devices.models import (
    Delivery,
    DeliveryStatus,
)

# Devices per sweep query (pending_for_devices).
SWEEP_BATCH = 5000


def pending_for_devices(
    *, device_ids: list[UUID], older_than: datetime, limit: int
) -> dict[UUID, int]:
    """Of these devices (a node's live sessions), those with a pending
    delivery older than a moment, with their lowest pending seq. Used by
    the node's sweep to recover wake-ups that the channel layer lost.

    Driven by the device ids, one probe of the open-deliveries index each,
    so its cost follows the node's sessions and not the size of the
    backlog: joining on the devices' node column let PostgreSQL scan every
    open delivery (4.3 s with a million-device campaign queued, every
    second on every node: heartbeats stalled and nodes judged each other
    dead, docs/benchmarks.md).
    """
    lowest: dict[UUID, int] = {}
    now = timezone.now()
    for start in range(0, len(device_ids), SWEEP_BATCH):
        if len(lowest) >= limit:
            break
        rows = (
            Delivery.objects.filter(
                device_id__in=in_values(
                    device_ids[start : start + SWEEP_BATCH], "uuid"
                ),
                status=DeliveryStatus.PENDING,
                created_at__lt=older_than,
                expires_at__gt=now,
            )
            .order_by("device_id", "seq")
            .values_list("device_id", "seq")[:limit]
        )
        for device_id, seq in rows:
            lowest.setdefault(device_id, seq)
    return lowest


def delivery_id_high_water() -> int:
    """The highest delivery id committed so far (0 for an empty table)."""
    row = Delivery.objects.order_by("-pk").values_list("pk", flat=True).first()
    return row or 0


def pending_on_node_since(
    *, node: str, after_id: int, older_than: datetime, limit: int
) -> dict[UUID, int]:
    """Devices present on `node` with a pending delivery of id above
    `after_id` created before `older_than`, with their lowest pending seq.

    The node's incremental sweep: its cost follows the deliveries created
    since the last sweeps (a range of the primary key), not the node's
    sessions or the backlog of offline devices, so it can run every
    second at 20,000 sockets per process.
    """
    rows = (
        Delivery.objects.filter(
            pk__gt=after_id,
            status=DeliveryStatus.PENDING,
            created_at__lt=older_than,
            expires_at__gt=timezone.now(),
            device__node=node,
        )
        .values("device_id")
        .annotate(lowest=Min("seq"))
        .values_list("device_id", "lowest")[:limit]
    )
    return dict(rows)
