"""/metrics: protected, Prometheus text, batched on the hot path, and in
multiprocess mode one scrape reports every process of the machine."""

import asyncio
import signal
import time

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from devices.delivery import metrics, pushes
from devices.models import Device
from tests.e2e.servers import free_port
from tests.factories import make_app, make_device
from tests.ops.procs import start_server, stopping
from tests.wsclient import DeviceClient


def test_batched_latency_equals_one_observe_per_push():
    one, batch = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("lat", "x", buckets=metrics.LATENCY_BUCKETS, registry=one)
    h2 = Histogram("lat", "x", buckets=metrics.LATENCY_BUCKETS, registry=batch)
    stats = metrics.Stats()
    for seconds, count in [(0.004, 3), (0.2, 5), (0.2, 1), (7.0, 2), (90.0, 1)]:
        stats.observe_latency(seconds, count)
        for _ in range(count):
            h1.observe(seconds)
    metrics.observe_batch(h2, stats.latency_counts, stats.latency_sum)

    def samples(registry):
        return [
            line
            for line in generate_latest(registry).decode().splitlines()
            if not line.startswith("#") and "_created" not in line
        ]

    assert samples(one) == samples(batch)


def test_publish_moves_counts_and_starts_over():
    before = metrics.SENT._value.get()
    metrics.stats.sent += 7
    metrics.stats.handshakes += 2
    metrics.publish("node-x", 3)
    assert metrics.SENT._value.get() == before + 7
    assert metrics.stats.sent == 0
    assert metrics.CONNECTED.labels("node-x")._value.get() == 3


@pytest.mark.django_db
def test_metrics_need_the_token_or_staff(client, settings):
    settings.KPNS_METRICS_TOKEN = "s3cret-metrics-token"
    assert client.get("/metrics").status_code == 403
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    assert wrong["Content-Type"] == "application/problem+json"
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert ok.status_code == 200
    text = ok.content.decode()
    assert "kpns_pushes_sent_total" in text
    assert "kpns_online_devices" in text or "kpns_nodes" in text

    user = get_user_model().objects.create_user("clerk", password="pw-clerk-123")
    client.force_login(user)
    assert client.get("/metrics").status_code == 403
    user.is_staff = True
    user.save()
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_no_token_configured_means_staff_only(client, settings):
    settings.KPNS_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def scrape(url, token):
    response = httpx.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    return families


def total(families, name, **labels):
    return sum(
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_one_scrape_reports_every_process(redis_url, redis_layer, tmp_path):
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    token = "scrape-token-123"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(multiproc), "KPNS_METRICS_TOKEN": token}
    procs = []
    with stopping(procs):
        for _ in range(2):
            procs.append(
                start_server(
                    free_port(), redis_url=redis_url, tmp_path=tmp_path, extra_env=env
                )
            )

        def make():
            app = make_app(name="Metered")
            return app, [make_device(app) for _ in range(4)]

        app, devices = await database_sync_to_async(make)()
        clients = []
        for index, (_device, device_token) in enumerate(devices):
            client = DeviceClient(procs[index % 2].ws_url, device_token)
            await client.connect()
            clients.append(client)
        ids = [device.pk for device, _ in devices]
        for _ in range(100):
            online = await database_sync_to_async(
                Device.objects.filter(pk__in=ids, node__isnull=False).count
            )()
            if online == 4:
                break
            await asyncio.sleep(0.05)
        await database_sync_to_async(pushes.push_to_devices)(
            app=app, device_ids=ids, title="metered"
        )
        for client in clients:
            await client.ack(await client.receive_push(timeout=10))

        deadline = time.monotonic() + 10
        families = {}
        while time.monotonic() < deadline:
            families = await asyncio.to_thread(scrape, procs[0].http_url, token)
            if total(families, "kpns_pushes_delivered_total") >= 4:
                break
            await asyncio.sleep(0.3)
        assert total(families, "kpns_pushes_sent_total") >= 4
        assert total(families, "kpns_pushes_delivered_total") >= 4
        assert total(families, "kpns_handshakes_total", outcome="accepted") >= 4
        assert total(families, "kpns_delivery_latency_seconds_count") >= 4
        connected = [
            s
            for s in families["kpns_connected_devices"].samples
            if s.name == "kpns_connected_devices"
        ]
        # One series per server process (pid label), each holding 2 devices.
        assert sorted(s.value for s in connected) == [2.0, 2.0], connected
        assert len({s.labels["pid"] for s in connected}) == 2
        assert total(families, "kpns_online_devices", app="Metered") == 4

        # A process killed outright: its live gauge leaves the next scrape.
        procs[1].signal(signal.SIGKILL)
        await asyncio.to_thread(procs[1].wait, 10)
        families = await asyncio.to_thread(scrape, procs[0].http_url, token)
        pids = {
            s.labels["pid"]
            for s in families["kpns_connected_devices"].samples
            if s.name == "kpns_connected_devices"
        }
        assert pids == {str(procs[0].pid)}
        # Counters of the dead process still count (they never go down).
        assert total(families, "kpns_pushes_delivered_total") >= 4
        for client in clients:
            await client.close()


def test_gc_pauses_are_timed_and_published():
    import gc

    from devices.server import gcpause

    child = metrics.GC_PAUSE.labels("2")
    before = child._sum.get()
    count_before = sum(b.get() for b in child._buckets)
    gcpause.watch()
    try:
        gc.collect()
    finally:
        gcpause.unwatch()
    metrics.publish()
    assert sum(b.get() for b in child._buckets) == count_before + 1
    assert child._sum.get() > before


def test_server_tuning_freezes_startup_objects_and_sets_thresholds():
    import subprocess
    import sys

    code = (
        "import gc; from devices.server import gcpause; gcpause.tune([30000, 7, 90]);"
        "print(gc.get_threshold(), gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "(30000, 7, 90) True", out.stderr
