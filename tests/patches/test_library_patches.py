"""The patches of every KPNS process (not only servers), in this process:
the test session installs them as kpns_scheduler does (tests/conftest.py)."""

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from psycopg_pool.base import AttemptWithBackoff

from devices.delivery import metrics
from devices.patches import prometheus_client, psycopg_pool

OBSERVED = [(0.004, 3), (0.2, 5), (0.3, 1), (7.0, 2), (90.0, 1), (45.0, 2)]


def delays(attempts: int) -> list[float]:
    attempt = AttemptWithBackoff(timeout=600)
    found = []
    for _ in range(attempts):
        attempt.update_delay(now=0.0)
        found.append(attempt.delay)
    return found


def test_a_lost_pool_connection_is_retried_every_second():
    assert AttemptWithBackoff.DELAY_BACKOFF == psycopg_pool.DELAY_BACKOFF
    first, *rest = delays(5)
    assert 0.9 <= first <= 1.1
    assert rest == [first] * 4


def test_without_the_patch_the_pool_backs_off_to_16_seconds(monkeypatch):
    monkeypatch.setattr(AttemptWithBackoff, "DELAY_BACKOFF", 2.0)
    found = delays(5)
    assert found[-1] == pytest.approx(16 * found[0])


def histograms():
    registries = CollectorRegistry(), CollectorRegistry()
    return registries, [
        Histogram("lat", "x", buckets=metrics.LATENCY_BUCKETS, registry=r)
        for r in registries
    ]


def samples(registry) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if not line.startswith("#") and "_created" not in line
    }


@pytest.mark.parametrize("bulk", [True, False])
def test_batched_observations_equal_one_observe_per_push(bulk, monkeypatch):
    """Bulk (private per-bucket values) when installed, the public observe()
    per observation otherwise: the same buckets and count, the same sum."""
    monkeypatch.setattr(prometheus_client, "enabled", bulk)
    (one, batch), (h1, h2) = histograms()
    stats = metrics.Stats()
    for seconds, count in OBSERVED:
        stats.observe_latency(seconds, count)
        for _ in range(count):
            h1.observe(seconds)
    metrics.observe_batch(h2, stats.latency_counts, stats.latency_sum)
    expected, found = samples(one), samples(batch)
    assert found.keys() == expected.keys()
    for name, value in expected.items():
        assert found[name] == pytest.approx(value, rel=1e-9), name


def test_installed_in_every_process():
    assert prometheus_client.enabled is True
