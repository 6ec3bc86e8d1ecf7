"""Prometheus metrics of the socket path and the scheduler (docs/operations.md).

The hot path never touches a Prometheus metric: the node counts in plain
integers (`stats`, one event loop per process, so no lock) and `publish()`
moves the counts into the metrics once a second. In production the server
processes and schedulers share PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode): whichever process answers /metrics reports all of this
machine's processes. Without it, /metrics shows the answering process only.
"""

import bisect
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

# Delivery latency: the push's `sent_at` (its message committed) to the
# frame handed to the socket, for live wake-ups (replays after a reconnect
# measure the device's absence, not the server).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

CONNECTED = Gauge(
    "kpns_connected_devices",
    "Devices with a live session on this server process.",
    ["node"],
    multiprocess_mode="liveall",
)
HANDSHAKES = Counter(
    "kpns_handshakes_total",
    "Device WebSocket handshakes, by outcome.",
    ["outcome"],
)
HANDSHAKES_REFUSED = Counter(
    "kpns_handshakes_refused_total",
    "Device WebSocket handshakes refused, by reason (docs/operations.md).",
    ["reason"],
)
SENT = Counter("kpns_pushes_sent_total", "Pushes written to a device socket.")
DELIVERED = Counter("kpns_pushes_delivered_total", "Pushes acked by the device.")
OPENED = Counter("kpns_pushes_opened_total", "Pushes the user opened.")
EXPIRED = Counter(
    "kpns_deliveries_expired_total",
    "Deliveries whose TTL passed before the device acked (scheduler housekeeping).",
)
FAILED = Counter(
    "kpns_pushes_failed_total",
    "Work that failed and is retried from the database: receipt batches not "
    "written, campaign chunks not sent.",
    ["reason"],
)
LATENCY = Histogram(
    "kpns_delivery_latency_seconds",
    "Push committed (its sent_at) to written on the socket, live wake-ups.",
    buckets=LATENCY_BUCKETS,
)
LAYER_ERRORS = Counter(
    "kpns_channel_layer_errors_total",
    "Channel-layer sends or receives that failed (Redis down, channel full).",
    ["op"],
)
SCHEDULER_LAG = Gauge(
    "kpns_scheduler_lag_seconds",
    "How long the oldest due campaign chunk has been waiting.",
    multiprocess_mode="livemax",
)
NODES_REAPED = Counter(
    "kpns_nodes_reaped_total",
    "Dead server processes whose devices were marked offline.",
    ["by"],
)
SWEEP_SECONDS = Gauge(
    "kpns_sweep_seconds",
    "How long the node's last sweep for lost wake-ups took.",
    ["node"],
    multiprocess_mode="liveall",
)
SWEEP_LAG = Gauge(
    "kpns_sweep_lag_seconds",
    "Seconds since the node's last sweep finished: stays near "
    "KPNS_SWEEP_SECONDS while sweeps keep their period.",
    ["node"],
    multiprocess_mode="liveall",
)
REBALANCED = Counter(
    "kpns_rebalanced_sockets_total",
    "Sockets closed with 1012 to move their devices to a less loaded process.",
)
DRAINS = Counter("kpns_drains_total", "Graceful drains of a server process.")
GC_PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_PAUSE = Histogram(
    "kpns_gc_pause_seconds",
    "Python garbage-collector pauses (the event loop stops), by generation.",
    ["generation"],
    buckets=GC_PAUSE_BUCKETS,
)


@dataclass
class Stats:
    """Counts kept by the event loop between two publishes (no locks)."""

    handshakes: int = 0
    refused: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    refused_by: dict[str, int] = field(default_factory=dict)
    receipt_failures: int = 0
    layer_receive_errors: int = 0
    # Latency observations: one count per bucket (the last is +Inf).
    latency_counts: list[int] = field(
        default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1)
    )
    latency_sum: float = 0.0
    # generation -> pause seconds of each collection since the last publish.
    gc_pauses: dict[int, list[float]] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused += 1
        self.refused_by[reason] = self.refused_by.get(reason, 0) + 1

    def observe_gc(self, generation: int, seconds: float) -> None:
        self.gc_pauses.setdefault(generation, []).append(seconds)

    def observe_latency(self, seconds: float, count: int = 1) -> None:
        """`count` pushes written `seconds` after their commit."""
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        self.latency_counts[index] += count
        self.latency_sum += seconds * count


stats = Stats()


def publish(node_name: str | None = None, connected: int | None = None) -> None:
    """Move the loop's counts into the Prometheus metrics (once a second)."""
    global stats
    taken, stats = stats, Stats()
    if taken.handshakes:
        HANDSHAKES.labels("accepted").inc(taken.handshakes)
    if taken.refused:
        HANDSHAKES.labels("refused").inc(taken.refused)
    for reason, count in taken.refused_by.items():
        HANDSHAKES_REFUSED.labels(reason).inc(count)
    if taken.sent:
        SENT.inc(taken.sent)
    if taken.delivered:
        DELIVERED.inc(taken.delivered)
    if taken.opened:
        OPENED.inc(taken.opened)
    if taken.receipt_failures:
        FAILED.labels("receipts_not_written").inc(taken.receipt_failures)
    if taken.layer_receive_errors:
        LAYER_ERRORS.labels("receive").inc(taken.layer_receive_errors)
    if any(taken.latency_counts):
        observe_batch(LATENCY, taken.latency_counts, taken.latency_sum)
    for generation, pauses in taken.gc_pauses.items():
        child = GC_PAUSE.labels(str(generation))
        for seconds in pauses:
            child.observe(seconds)
    if node_name is not None and connected is not None:
        CONNECTED.labels(node_name).set(connected)


def observe_sweep(node_name: str, seconds: float, lag: float) -> None:
    SWEEP_SECONDS.labels(node_name).set(seconds)
    SWEEP_LAG.labels(node_name).set(lag)


def observe_batch(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add many observations at once: one write per bucket, not per push.

    prometheus-client has no bulk observe: devices.patches.prometheus_client
    adds to the histogram's private per-bucket values once installed, and
    calls the public observe() per observation otherwise.
    """
    from devices.patches import prometheus_client

    prometheus_client.observe_batch(histogram, counts, total)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_exited(pid: int | None = None) -> None:
    """Drop this process's live gauges (it is leaving: drain or exit)."""
    path = multiprocess_dir()
    if path:
        from prometheus_client import multiprocess

        mark_dead: Callable[[int, str], None] = multiprocess.mark_process_dead
        mark_dead(pid or os.getpid(), path)
