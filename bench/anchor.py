"""The Mosquitto anchor: KPNS and a Mosquitto broker measured in one run.

`python -m bench.run --scenario anchor --devices N`. Mosquitto is the peer
closest in semantics (acked delivery, a queue per persistent session while
the device is away). The scenario measures, for the N devices of the run,
KPNS (its sockets, the production shape of the harness) and then a
Mosquitto of our own (its own config, port and data directory under the
harness's temporary directory, persistence on, stopped at the end) with N
MQTT 3.1.1 devices (bench/mqttload.py: clean_session=0, QoS 1, a PUBACK
per message), on the same load average, and reports each figure with its
ratio:

* connect rate: sockets ready after the handshake (KPNS: welcome; MQTT:
  CONNACK and SUBACK), 200 at a time per client process, per second;
* idle RSS per connection: server RSS above its baseline, per socket;
* broadcast: publish (Send now / one QoS 1 PUBLISH) to the last receipt;
* targeted sends one after another: one sender, each send waits for its
  acceptance (HTTP 202 / the broker's PUBACK) before the next; latency
  from the send to the device's receipt, p50/p99, and sends per second.
"""

import argparse
import asyncio
import getpass
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench import mqttload
from bench.platform import ROOT, Platform, free_port, wait_for_port
from bench.run import percentile

# Debian's package installs the broker under sbin, off a user's PATH.
MOSQUITTO = os.environ.get("MOSQUITTO") or shutil.which(
    "mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin"
)
SOCKETS_PER_CLIENT = 15_000
FIRST_SOURCE = 150  # 127.0.0.150...: clear of the KPNS load clients'
RECEIPT_TIMEOUT = 120.0


class Broker:
    """Our own Mosquitto: config, port and data directory under `tmp`."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        # A directory per broker: a reused one restores the last run's
        # persistent sessions at start, into the RSS baseline.
        self.dir = tmp / f"mosquitto-{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Broker":
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {self.dir}/",
                    "autosave_interval 60",
                    # Queued QoS 1 messages per offline session (default 1000).
                    "max_queued_messages 1000",
                    # As the KPNS servers' sockets: no Nagle delay.
                    "set_tcp_nodelay true",
                    f"user {getpass.getuser()}",
                    f"log_dest file {self.dir}/mosquitto.log",
                    "",
                ]
            )
        )
        if not MOSQUITTO:
            raise RuntimeError("no mosquitto binary (set MOSQUITTO)")
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "stderr.log").open("w"),
        )
        wait_for_port(self.port, self.process, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def rss(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


def scenario_anchor(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """KPNS and Mosquitto side by side at N devices (see the module doc)."""
    from bench import scenarios

    count = args.devices
    sends = args.anchor_sends
    kpns_idle = scenarios.scenario_idle(platform, args)
    kpns_broadcast = scenarios.scenario_broadcast(platform, args)
    kpns_targeted = _kpns_one_after_another(platform, sends)
    platform.close_clients()
    platform.wait_offline()
    kpns_connect = platform.connect_all()
    with Broker(platform.tmp) as broker:
        mqtt = _mosquitto(broker, platform, count, sends)
    kpns = {
        "connect_per_s": round(kpns_connect["connected"] / kpns_connect["seconds"], 1),
        "rss_per_connection_kb": kpns_idle["rss_per_socket_kb"],
        "broadcast_last_s": kpns_broadcast["last_s"],
        "targeted_p50_ms": kpns_targeted["p50_ms"],
        "targeted_p99_ms": kpns_targeted["p99_ms"],
        "targeted_per_s": kpns_targeted["per_s"],
    }
    figures: dict[str, Any] = {}
    for name, value in kpns.items():
        other = mqtt[name]
        figures[f"kpns_{name}"] = value
        figures[f"mosquitto_{name}"] = other
        if isinstance(value, int | float) and isinstance(other, int | float) and other:
            figures[f"ratio_{name}"] = round(value / other, 2)
    figures["load_average"] = round(os.getloadavg()[0], 2)
    figures["checks"] = {
        "kpns: every broadcast push once": kpns_broadcast["checks"]["0 lost"]
        and kpns_broadcast["checks"]["0 duplicated"],
        "kpns: every targeted send received": kpns_targeted["received"] == sends,
        "kpns: every device reconnected": kpns_connect["failed"] == 0,
        "mosquitto: every device connected": mqtt["connected"] == count,
        "mosquitto: broadcast received once by each": mqtt["broadcast_received"]
        == count,
        "mosquitto: every targeted send received": mqtt["targeted_received"] == sends,
    }
    return figures


def _kpns_one_after_another(platform: Platform, sends: int) -> dict[str, Any]:
    """POST /api/v1/pushes on one connection, each after the last's 202."""
    from bench.scenarios import _receipts_until

    platform.reports()  # start from empty receipts
    ids = platform.online_device_ids()
    rng = random.Random(11)
    requests = [
        {
            "path": "/api/v1/pushes",
            "body": {"device_ids": [rng.choice(ids)], "title": "T", "body": "x"},
        }
        for _ in range(sends)
    ]
    load = platform.http_load(requests, rate=0, connections=1)
    accepted = {
        r["answer"]["message_id"]: r for r in load["results"] if r.get("status") == 202
    }
    times, _out_of_order = _receipts_until(platform, set(accepted), timeout=60)
    latencies = [
        times[m][0] - r["scheduled"] for m, r in accepted.items() if m in times
    ]
    return _sequential_figures(latencies, load["finished"] - load["started"], sends)


def _mosquitto(
    broker: Broker, platform: Platform, count: int, sends: int
) -> dict[str, Any]:
    baseline = broker.rss()
    clients = _start_clients(broker, platform, count)
    try:
        connected = platform.connect(clients)
        time.sleep(5)  # settle, as the KPNS idle figure does
        rss = broker.rss()
        cpu_before = broker.cpu_seconds()
        _reports(platform, clients)
        t0 = time.time()
        asyncio.run(_publish_broadcast(broker.port, f"b-{t0}"))
        broadcast = _wait_receipts(platform, clients, {f"b-{t0}"}, count)
        received = broadcast.get(f"b-{t0}", [])
        broadcast_cpu = broker.cpu_seconds() - cpu_before
        published = asyncio.run(_publish_one_after_another(broker.port, count, sends))
        targeted = _wait_receipts(platform, clients, set(published), 1)
        latencies = [
            targeted[key][0] - sent_at
            for key, sent_at in published.items()
            if key in targeted
        ]
        span = max(published.values()) - min(published.values()) if published else 0
    finally:
        for client in clients:
            platform.command(client, "close", timeout=60)
            client.wait(timeout=30)
    sequential = _sequential_figures(latencies, span, sends)
    return {
        "connected": connected["connected"],
        "connect_per_s": round(connected["connected"] / connected["seconds"], 1),
        "rss_per_connection_kb": round((rss - baseline) / max(1, count) / 1024, 2),
        "broadcast_last_s": round(max(received) - t0, 4) if received else None,
        "broadcast_received": len(received),
        "broadcast_cpu_s": round(broadcast_cpu, 3),
        "targeted_p50_ms": sequential["p50_ms"],
        "targeted_p99_ms": sequential["p99_ms"],
        "targeted_per_s": sequential["per_s"],
        "targeted_received": sequential["received"],
    }


def _start_clients(
    broker: Broker, platform: Platform, count: int
) -> list[subprocess.Popen]:
    processes = max(1, math.ceil(count / SOCKETS_PER_CLIENT))
    per = math.ceil(count / processes)
    clients = []
    for index in range(processes):
        first = index * per
        command = [sys.executable, "-m", "bench.mqttload", "--port", str(broker.port)]
        command += ["--first", str(first), "--count", str(min(per, count - first))]
        command += ["--source", f"127.0.0.{FIRST_SOURCE + index}"]
        if platform.sync_pings:
            command.append("--sync-pings")
        clients.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    return clients


def _reports(platform: Platform, clients: list[subprocess.Popen]) -> list[Any]:
    return [platform.command(client, "report", timeout=60) for client in clients]


def _wait_receipts(
    platform: Platform,
    clients: list[subprocess.Popen],
    wanted: set[str],
    each: int,
) -> dict[str, list[float]]:
    """Receipts until every wanted message arrived `each` times (bounded)."""
    times: dict[str, list[float]] = {}
    deadline = time.monotonic() + RECEIPT_TIMEOUT
    while time.monotonic() < deadline:
        for report in _reports(platform, clients):
            for key, stamps in report["times"].items():
                times.setdefault(key, []).extend(stamps)
        if all(len(times.get(key, [])) >= each for key in wanted):
            break
        time.sleep(0.2)
    return times


async def _publish_broadcast(port: int, key: str) -> None:
    session = await mqttload.open_session(
        "127.0.0.1", port, f"kpns-bench-pub-{key}", clean=True, topics=[]
    )
    await mqttload.publish(session, 1, mqttload.BROADCAST_TOPIC, key.encode())
    assert session.transport is not None
    session.transport.close()


async def _publish_one_after_another(
    port: int, count: int, sends: int
) -> dict[str, float]:
    """Sends to random devices, each after the broker's PUBACK of the last;
    returns each send's time by its payload."""
    session = await mqttload.open_session(
        "127.0.0.1", port, "kpns-bench-pub-targeted", clean=True, topics=[]
    )
    rng = random.Random(11)
    sent: dict[str, float] = {}
    for number in range(sends):
        key = f"t-{number}"
        sent[key] = time.time()
        topic = mqttload.device_topic(rng.randrange(count))
        await mqttload.publish(session, number % 65_535 + 1, topic, key.encode())
    assert session.transport is not None
    session.transport.close()
    return sent


def _sequential_figures(
    latencies: list[float], span: float, sends: int
) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "received": len(ordered),
        "p50_ms": round(percentile(ordered, 0.5) * 1000, 2) if ordered else None,
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2) if ordered else None,
        "per_s": round(sends / span, 1) if span else None,
    }
