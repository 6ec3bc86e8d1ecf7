"""Garbage-collector pauses of a server process, measured and kept short.

A server process holding 20,000 sockets has millions of long-lived objects;
CPython's full (generation 2) collection walks all of them with the event
loop stopped, which showed up as stalls of every socket at once
(docs/benchmarks.md, "the latency tail"). This module times every
collection (the `kpns_gc_pause_seconds` histogram, a warning above
SLOW_PAUSE_SECONDS) and `tune()` moves what exists at start-up out of the
collector's reach and makes young collections rarer: objects that live a
few milliseconds (a push in flight, a receipt waiting for its flush) die
young instead of being promoted and walked again by the full collections.
"""

import gc
import logging
import time
from typing import Any

from devices.delivery import metrics

logger = logging.getLogger(__name__)

SLOW_PAUSE_SECONDS = 0.05

_started: list[float] = []


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
        return
    if not _started:
        return
    seconds = time.perf_counter() - _started.pop()
    generation = info.get("generation", -1)
    metrics.stats.observe_gc(generation, seconds)
    if seconds >= SLOW_PAUSE_SECONDS:
        logger.warning(
            "gc pause %.3f s (generation %d, %d collected)",
            seconds,
            generation,
            info.get("collected", 0),
        )


def watch() -> None:
    """Time every collection of this process from now on."""
    if _callback not in gc.callbacks:
        gc.callbacks.append(_callback)


def unwatch() -> None:
    if _callback in gc.callbacks:
        gc.callbacks.remove(_callback)


def tune(thresholds: tuple[int, ...] | list[int] | None = None) -> None:
    """Freeze what exists at start-up and set the collector's thresholds."""
    # Modules, settings, URL patterns, Twisted's reactor: alive until exit.
    # Frozen objects are skipped by every collection (they are still freed
    # by reference counting if they ever die).
    gc.collect()
    gc.freeze()
    if thresholds:
        gc.set_threshold(*thresholds)
