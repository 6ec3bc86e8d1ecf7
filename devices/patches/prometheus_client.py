"""prometheus-client: many histogram observations added at once.

Written for prometheus-client 0.26.0 (WRITTEN_FOR); an optimisation. A read
of private state, not a replacement: nothing in the library changes.

prometheus-client has no bulk observe; its histogram keeps one value per
bucket (not cumulative, `_buckets`) and a sum (`_sum`), which
`observe_batch` adds to directly: one write per bucket a second, not one
per push (devices.metrics). Until install() turns it on, or with
KPNS_PATCHES=off, the public `observe()` runs once per observation instead.
"""

import math
from typing import Any

from prometheus_client import Histogram

from devices.patches.guard import Library, Patch

LIBRARY = Library("prometheus-client", frozenset({"0.26.0"}))

enabled = False


def observe_batch(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add sum(counts) observations whose values sum to `total`; counts[i]
    of them fall in bucket i (the last is +Inf)."""
    if enabled:
        buckets = histogram._buckets  # type: ignore[attr-defined]
        if len(buckets) != len(counts):
            raise ValueError("histogram buckets do not match the counts")
        histogram._sum.inc(total)  # type: ignore[attr-defined]
        for value, count in zip(buckets, counts, strict=True):
            if count:
                value.inc(count)
        return
    bounds = _bounds(histogram)
    if len(bounds) != len(counts):
        raise ValueError("histogram buckets do not match the counts")
    for value, count in zip(_values_within(bounds, counts, total), counts, strict=True):
        for _ in range(count):
            histogram.observe(value)


def _bounds(histogram: Histogram) -> list[float]:
    """The buckets' upper bounds, +Inf last, from the public collect()."""
    samples = histogram.collect()[0].samples
    return [float(s.labels["le"]) for s in samples if s.name.endswith("_bucket")]


def _values_within(bounds: list[float], counts: list[int], total: float) -> list[float]:
    """A value inside each bucket such that the counts times them sum to
    `total` (as close as the buckets allow): what the public observe() can
    record without the individual observations."""
    lows = [0.0, *bounds[:-1]]
    highs = [*bounds[:-1], bounds[-2] * 2 if len(bounds) > 1 else 1.0]
    low_sum = sum(c * lo for c, lo in zip(counts, lows, strict=True))
    if counts[-1]:
        # Observations past the last bound: they take what the others leave.
        values = [(lo + hi) / 2 for lo, hi in zip(lows, highs, strict=True)]
        rest = total - sum(c * v for c, v in zip(counts[:-1], values, strict=False))
        values[-1] = max(math.nextafter(lows[-1], math.inf), rest / counts[-1])
        return values
    width = sum(c * (hi - lo) for c, lo, hi in zip(counts, lows, highs, strict=True))
    share = min(1.0, max(1e-9, (total - low_sum) / width)) if width else 1.0
    return [lo + share * (hi - lo) for lo, hi in zip(lows, highs, strict=True)]


def _check() -> list[str]:
    from prometheus_client import CollectorRegistry

    bounds = (1.0, 2.0)
    child: Any = Histogram(
        "kpns_patch_probe", "probe", buckets=bounds, registry=CollectorRegistry()
    )
    problems = []
    for name in ("_buckets", "_sum"):
        if not hasattr(child, name):
            problems.append(f"prometheus_client.Histogram instance has no {name}")
    if problems:
        return problems
    if len(child._buckets) != len(bounds) + 1:
        problems.append("prometheus_client.Histogram._buckets is no longer per bucket")
    if not all(
        callable(getattr(v, "inc", None)) for v in (child._sum, *child._buckets)
    ):
        problems.append("prometheus_client.Histogram values have no inc()")
    return problems


def _apply() -> None:
    global enabled
    enabled = True


PATCHES = [Patch("prometheus-client-bulk-observe", LIBRARY, _check, _apply)]
