"""Every library patch at work in a real `manage.py kpns_serve`, without
Redis (the in-process channel layer), and the same server with
KPNS_PATCHES=off, where each patch's effect disappears but the required
1012 close stays (devices/patches/, docs/architecture.md "Patches").

The server runs under tests/patches/probe.py, which counts calls into the
library code the patches bypass and reports what the server holds.
"""

import asyncio
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from devices.delivery.protocol import Ping, Pong
from devices.models import Device
from tests.e2e.servers import ROOT, child_env, free_port, stop_process, wait_for_port
from tests.factories import make_api_key, make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.django_db(transaction=True)]

SOCKETS = 60
PINGS = 50
METRICS_TOKEN = "patch-test-metrics-token"
OPTIONAL = {
    "autobahn-options-on-a-class",
    "autobahn-send-queue-on-first-use",
    "autobahn-small-frames-fast-path",
    "autobahn-unobserved-message-events",
    "autobahn-unstyled-debug-args",
    "daphne-changed-connections-checks",
    "daphne-direct-websocket-writes",
    "daphne-socket-input-queue",
    "daphne-release-upgraded-requests",
    "daphne-trim-open-sockets",
    "prometheus-client-bulk-observe",
    "psycopg-pool-retry-every-second",
    "twisted-eager-tcp-write",
}
REQUIRED = {"daphne-drain", "daphne-server-close-codes"}


class Probe:
    """kpns_serve under tests/patches/probe.py, on the in-process layer."""

    def __init__(self, tmp_path, patches: str) -> None:
        self.port = free_port()
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/v1/device/"
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.report = tmp_path / "patches.json"
        self.log = tmp_path / "probe.log"
        self.env = child_env(
            "",  # no REDIS_URL: the in-process channel layer
            {
                "KPNS_PATCH_REPORT": str(self.report),
                "KPNS_PATCHES": patches,
                "KPNS_METRICS_TOKEN": METRICS_TOKEN,
                "KPNS_DRAIN_SECONDS": "3",
            },
        )
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)

    def __enter__(self) -> "Probe":
        self.process = subprocess.Popen(
            [sys.executable, "tests/patches/probe.py", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, self.process, self.log)
        except BaseException:
            stop_process(self.process, timeout=15)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process, timeout=15)

    async def found(self, timeout: float = 20.0) -> dict:
        self.report.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not self.report.exists():
            assert time.monotonic() < deadline, self.log.read_text()
            await asyncio.sleep(0.1)
        return json.loads(self.report.read_text())


def world(count: int):
    app = make_app(name="Patched")
    _, key = make_api_key(app, scopes=["push:send"])
    return key, [make_device(app) for _ in range(count)]


async def push_and_scrape(probe: Probe, key: str, device, client) -> dict:
    """One push through the API to a live socket, then the latency histogram
    the node published (a batch of observations, devices.metrics)."""
    for _ in range(100):
        online = await database_sync_to_async(
            Device.objects.filter(pk=device.pk, node__isnull=False).exists
        )()
        if online:
            break
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=probe.http_url, timeout=30) as http:
        answer = await http.post(
            "/api/v1/pushes/batch",
            json={"messages": [{"device_ids": [str(device.pk)], "title": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 200, answer.text
        push = await client.receive_push()
        assert push.title == "hi"
        await asyncio.sleep(1.5)  # the node publishes its counts every second
        scraped = await http.get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
    assert scraped.status_code == 200, scraped.text
    samples = {}
    for family in text_string_to_metric_families(scraped.text):
        if family.name == "kpns_delivery_latency_seconds":
            for sample in family.samples:
                key_ = (sample.name, sample.labels.get("le"))
                samples[key_] = sample.value
    return samples


async def churn(clients) -> None:
    """Close half cleanly and abort the others."""
    for index, client in enumerate(clients):
        if index % 2:
            client.ws.transport.abort()
        else:
            await client.close()


@pytest.mark.parametrize("mode", ["on", "off"])
async def test_each_patch_changes_a_real_server(mode, tmp_path):
    on = mode == "on"
    key, devices = await database_sync_to_async(world)(SOCKETS + 1)
    with Probe(tmp_path, mode) as probe:
        clients = [DeviceClient(probe.ws_url, token) for _, token in devices]
        await asyncio.gather(*(client.connect() for client in clients[:SOCKETS]))
        await asyncio.sleep(2.5)  # past a timeout check and two application checks
        before = await probe.found()

        assert set(before["installed"]) == (OPTIONAL | REQUIRED if on else REQUIRED)
        assert before["open_sockets"] == SOCKETS
        # daphne-trim-open-sockets: open sockets forgot their handshake.
        assert before["kept_handshake"] == (0 if on else SOCKETS)
        # autobahn-options-on-a-class: no socket holds a copy of the options.
        copies = before["options"] * SOCKETS
        assert before["copied_options"] == (0 if on else copies), before
        # autobahn-send-queue-on-first-use: no open socket holds a deque
        # (each was sent its welcome frame, never a queued write).
        assert before["send_queues"] == (0 if on else SOCKETS), before
        # daphne-socket-input-queue: no asyncio.Queue per socket.
        queue = "SocketInputQueue" if on else "Queue"
        assert before["input_queues"] == {queue: SOCKETS}, before
        # daphne-changed-connections-checks: open sockets are due no visit.
        assert before["settling"] == before["opening"] == 0
        # autobahn-unstyled-debug-args: no debug argument formatted.
        formatted = sum(before["calls"].get(n, 0) for n in ("hltype", "hlval"))
        assert (formatted == 0) if on else (formatted > SOCKETS), before
        assert (before["calls"].get("pformat", 0) == 0) == on, before
        # psycopg-pool-retry-every-second.
        assert before["delay_backoff"] == (1.0 if on else 2.0)

        for n in range(PINGS):
            await clients[0].send(Ping(t=n))
            assert await clients[0].receive() == Pong(t=n)
        after = await probe.found()
        calls, was = after["calls"], before["calls"]
        # autobahn-unobserved-message-events: no "message" event per frame.
        fired = calls.get("message_event", 0) - was.get("message_event", 0)
        assert (fired == 0) if on else (fired >= PINGS), (fired, after)
        # autobahn-small-frames-fast-path: whole small frames skip the parser.
        parsed = calls.get("process_data", 0) - was.get("process_data", 0)
        assert (parsed < PINGS // 5) if on else (parsed >= PINGS), (parsed, after)
        # daphne-direct-websocket-writes: pongs skip Daphne's send coroutine.
        dispatched = calls.get("daphne_send", 0) - was.get("daphne_send", 0)
        assert (dispatched == 0) if on else (dispatched >= PINGS), (dispatched, after)
        # twisted-eager-tcp-write: a pong to an idle socket is sent at once,
        # never registered for a later write.
        buffered = calls.get("start_writing", 0) - was.get("start_writing", 0)
        assert (buffered < PINGS // 5) if on else (buffered >= PINGS), (buffered, after)

        # daphne-release-upgraded-requests and the checker's release: closed
        # connections leave no cycles for a full collection.
        await churn(clients[1:5])  # warm-up: first-use imports and caches
        await asyncio.sleep(2.5)
        await probe.found()
        await churn(clients[5:SOCKETS])
        await asyncio.sleep(2.5)  # Daphne forgets finished connections each second
        gone = await probe.found()
        assert gone["connections"] == 1, gone
        churned = SOCKETS - 5
        if on:
            assert gone["garbage"] < churned, gone
        else:  # about 55 objects per connection (devices/patches/daphne.py)
            assert gone["garbage"] > 10 * churned, gone

        # prometheus-client-bulk-observe (or, off, one observe() per push).
        assert after["bulk_observe"] == on
        samples = await push_and_scrape(probe, key, devices[0][0], clients[0])
        count = samples[("kpns_delivery_latency_seconds_count", None)]
        assert count == 1, samples
        assert samples[("kpns_delivery_latency_seconds_bucket", "+Inf")] == count
        assert 0 < samples[("kpns_delivery_latency_seconds_sum", None)] < 30

        # daphne-server-close-codes (required, on either way): the drain
        # closes with 1012 and the process exits 0.
        probe.process.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await clients[0].receive(timeout=10)
        assert closed.value.rcvd.code == 1012
        assert await asyncio.to_thread(probe.process.wait, 15) == 0
