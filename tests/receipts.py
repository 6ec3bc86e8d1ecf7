"""The receipt checker: what devices saw against what the database promised.

Every simulated device keeps a ``DeviceLog``: each push it received (message
id, seq, time, connection number) and whether the app-side drop rule
(``seq <= last_seq``) made it a wire duplicate, plus every ``resync`` frame.
``check`` compares the logs with the Delivery rows and reports, per device:

* lost: a delivery the device must have received and the app never saw;
* duplicated: a message the app saw twice (after the drop rule);
* out of order: a seq not above the previous one within one connection
  (the server writes each device's pushes in strictly increasing seq);
* leaked: a push for a message that has no delivery row for this device;
* mismatched: a message received with a seq other than its delivery's;
* silent gaps: dropped (pruned) deliveries without a ``resync`` frame.

"Must have received" is every delivery in scope except those expired,
collapsed, cancelled or dropped (docs/guarantees.md); receiving one of those
is allowed (a push already written to a socket is not recalled), receiving
a message with no delivery at all is a leak. The verdict is the assertion of
the reliability and security suites.
"""

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NOT_OWED = frozenset({"expired", "collapsed", "cancelled", "dropped"})


@dataclass(frozen=True)
class Receipt:
    message_id: str
    seq: int
    at: float  # time.monotonic() when the frame was read
    connection: int  # which connection of this device (0, 1, ...)
    wire_duplicate: bool  # seq <= last_seq: the app dropped it


@dataclass
class DeviceLog:
    """What one device received, with the app's drop rule applied."""

    device_id: str
    last_seq: int = 0  # the highest seq the app processed
    connection: int = 0
    receipts: list[Receipt] = field(default_factory=list)
    resyncs: list[int] = field(default_factory=list)  # their last_seq
    closes: list[int | None] = field(default_factory=list)  # close codes seen

    def record(self, message_id: str, seq: int) -> bool:
        """Log a push; True if the app processes it (not a wire duplicate)."""
        duplicate = seq <= self.last_seq
        self.receipts.append(
            Receipt(message_id, seq, time.monotonic(), self.connection, duplicate)
        )
        if not duplicate:
            self.last_seq = seq
        return not duplicate

    def new_connection(self) -> None:
        self.connection += 1

    @property
    def app_seen(self) -> list[Receipt]:
        return [r for r in self.receipts if not r.wire_duplicate]

    @property
    def wire_duplicates(self) -> int:
        return sum(r.wire_duplicate for r in self.receipts)


@dataclass(frozen=True)
class Row:
    """One Delivery row as the checker needs it."""

    device_id: str
    message_id: str
    seq: int
    status: str


@dataclass
class Verdict:
    lost: dict[str, list[str]] = field(default_factory=dict)
    duplicated: dict[str, list[str]] = field(default_factory=dict)
    out_of_order: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    leaked: dict[str, list[str]] = field(default_factory=dict)
    mismatched: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)
    silent_gaps: list[str] = field(default_factory=list)
    owed: int = 0
    received: int = 0
    wire_duplicates: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.out_of_order
            or self.leaked
            or self.mismatched
            or self.silent_gaps
        )

    def summary(self) -> str:
        def count(found: Mapping[str, list[Any]]) -> str:
            total = sum(len(v) for v in found.values())
            example = next(iter(found.items()), None)
            return f"{total} on {len(found)} devices" + (
                f" (e.g. {example[0]}: {example[1][:3]})" if example else ""
            )

        return (
            f"owed {self.owed}, received {self.received} "
            f"(+{self.wire_duplicates} wire duplicates); "
            f"lost {count(self.lost)}; duplicated {count(self.duplicated)}; "
            f"out of order {count(self.out_of_order)}; leaked {count(self.leaked)}; "
            f"mismatched {count(self.mismatched)}; "
            f"silent gaps {len(self.silent_gaps)}"
        )

    def assert_ok(self) -> None:
        assert self.ok, self.summary()


def check(
    logs: Iterable[DeviceLog],
    rows: Iterable[Row],
    *,
    message_ids: Iterable[str] | None = None,
) -> Verdict:
    """Compare device logs with delivery rows.

    ``rows`` should hold every delivery of the logged devices (any status);
    ``message_ids`` limits "owed" and "lost" to these messages (other
    messages a device received are still checked for leaks and order).
    """
    scope = None if message_ids is None else {str(m) for m in message_ids}
    by_device: dict[str, dict[str, Row]] = defaultdict(dict)
    for row in rows:
        by_device[str(row.device_id)][str(row.message_id)] = row
    verdict = Verdict()
    for log in logs:
        device = str(log.device_id)
        rows_here = by_device.get(device, {})
        seen = log.app_seen
        verdict.received += len(seen)
        verdict.wire_duplicates += log.wire_duplicates
        owed = {
            mid
            for mid, row in rows_here.items()
            if row.status not in NOT_OWED and (scope is None or mid in scope)
        }
        verdict.owed += len(owed)
        seen_ids = Counter(r.message_id for r in seen)
        lost = sorted(owed - set(seen_ids))
        if lost:
            verdict.lost[device] = lost
        duplicated = sorted(mid for mid, n in seen_ids.items() if n > 1)
        if duplicated:
            verdict.duplicated[device] = duplicated
        leaked = sorted({r.message_id for r in log.receipts} - set(rows_here))
        if leaked:
            verdict.leaked[device] = leaked
        mismatched = sorted(
            {
                (r.message_id, r.seq, rows_here[r.message_id].seq)
                for r in log.receipts
                if r.message_id in rows_here and rows_here[r.message_id].seq != r.seq
            }
        )
        if mismatched:
            verdict.mismatched[device] = mismatched
        disorder = []
        previous: dict[int, int] = {}
        for r in log.receipts:
            before = previous.get(r.connection)
            if before is not None and r.seq <= before:
                disorder.append((before, r.seq))
            previous[r.connection] = r.seq
        if disorder:
            verdict.out_of_order[device] = disorder
        dropped = [
            row
            for mid, row in rows_here.items()
            if row.status == "dropped" and (scope is None or mid in scope)
        ]
        if dropped and not log.resyncs:
            verdict.silent_gaps.append(device)
    return verdict


def rows_from_orm(device_ids: Iterable[Any]) -> list[Row]:
    """Every delivery of these devices, through the Django ORM (sync)."""
    from devices.models import Delivery

    ids = [str(d) for d in device_ids]
    rows: list[Row] = []
    for start in range(0, len(ids), 2000):
        rows.extend(
            Row(str(d), str(m), s, st)
            for d, m, s, st in Delivery.objects.filter(
                device_id__in=ids[start : start + 2000]
            ).values_list("device_id", "message_id", "seq", "status")
        )
    return rows


def rows_from_sql(cursor: Any, device_ids: Iterable[Any]) -> list[Row]:
    """The same through a DB-API cursor on PostgreSQL (private databases)."""
    cursor.execute(
        "SELECT device_id::text, message_id::text, seq, status "
        "FROM devices_delivery WHERE device_id = ANY(%s::uuid[])",
        [[str(d) for d in device_ids]],
    )
    return [Row(*row) for row in cursor.fetchall()]
