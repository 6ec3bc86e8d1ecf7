"""Operations at full size (issue 21): a drain of every socket of one
process, and the API while a process is rolled. Devices here reconnect as
the SDKs do (bench/opsclient.py), so these scenarios start their own load
clients; bench.run does not connect its plain ones for them.

  python -m bench.run --scenario drain --devices 19000 --servers 2 --runs 1
  python -m bench.run --scenario api-during-roll --devices 10000 --runs 1

docs/operations.md ("Drains at full size", "API during a roll") and
docs/benchmarks.md give the figures.
"""

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from bench.platform import Platform, wait_for_port
from bench.run import ROOT, SOCKETS_PER_CLIENT, percentile
from bench.scenarios import _wait_message

# The rolled process's devices reconnect with the SDKs' backoff (up to
# 30 s an attempt): how long they may take to be all back.
RECONNECT_TIMEOUT = 300.0
RECEIPT_TIMEOUT = 120.0
TARGETS_PER_PUSH = 10


# Servers and clients ------------------------------------------------------


def restart_server(
    platform: Platform, index: int, env: dict[str, str] | None = None
) -> None:
    """Start server `index` again on its port (as supervisord does after a
    drain), with `env` on top of the platform's environment."""
    port, old = platform.servers[index]
    if old.poll() is None:
        old.terminate()
        old.wait(timeout=60)
    log = (platform.tmp / f"server-{port}-{time.time():.0f}.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "kpns_serve",
            "--port",
            str(port),
            "--application",
            "bench.asgi.application",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    platform.servers[index] = (port, process)
    wait_for_port(port, process)


def wait_ready(port: int, timeout: float = 60) -> float:
    """Seconds until the server's /readyz answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            url = f"http://127.0.0.1:{port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on {port} not ready in {timeout} s")


def start_ops_clients(platform: Platform, *, spread: bool) -> None:
    """Reconnecting load clients for every device, each on its own
    127.0.0.x source address (docs/field-notes.md, trap 3)."""
    urls = [f"ws://127.0.0.1:{port}/ws/v1/device/" for port, _ in platform.servers]
    tokens = platform.tokens
    count = max(1, math.ceil(len(tokens) / SOCKETS_PER_CLIENT))
    per = math.ceil(len(tokens) / count)
    for index in range(count):
        token_file = platform.tmp / f"ops-tokens-{index}.json"
        token_file.write_text(json.dumps(tokens[index * per : (index + 1) * per]))
        command = [
            sys.executable,
            "-m",
            "bench.opsclient",
            "--devices",
            str(token_file),
        ]
        command += ["--source", f"127.0.0.{2 + index}"]
        command += [arg for url in urls for arg in ("--url", url)]
        command += ["--spread"] if spread else []
        platform.clients.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    answer = platform.connect(platform.clients)
    if answer["failed"]:
        raise RuntimeError(f"{answer['failed']} devices did not connect: {answer}")
    platform.wait_online(len(tokens))


def closes(platform: Platform) -> dict[str, Any]:
    """The clients' closes and reconnects, summed."""
    answers = platform.broadcast_command("closes", timeout=60)
    codes: dict[str, int] = {}
    for answer in answers:
        for code, n in answer["codes"].items():
            codes[code] = codes.get(code, 0) + n
    return {
        "codes": codes,
        "first_close_at": min((a["first_close_at"] or math.inf) for a in answers),
        "last_close_at": max(a["last_close_at"] for a in answers),
        "reconnects": sum(a["reconnects"] for a in answers),
        "last_welcome_at": max(a["last_welcome_at"] for a in answers),
        "open": sum(a["open"] for a in answers),
        "gave_up": sum(a["gave_up"] for a in answers),
    }


def shares() -> dict[str, int]:
    from devices.delivery import presence

    return presence.online_by_node()


def node_of(pid: int) -> str | None:
    from devices.models import Node

    return Node.objects.filter(pid=pid).values_list("name", flat=True).first()


def receipts(platform: Platform) -> tuple[dict[str, list[float]], int]:
    times: dict[str, list[float]] = {}
    out_of_order = 0
    for report in platform.reports():
        out_of_order += report["out_of_order"]
        for message_id, stamps in report["times"].items():
            times.setdefault(message_id, []).extend(stamps)
    return times, out_of_order


def _ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(values, 0.5) * 1000, 1),
        "p99": round(percentile(values, 0.99) * 1000, 1),
        "max": round(max(values) * 1000, 1),
    }


# Drain --------------------------------------------------------------------


def scenario_drain(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Every device on one process, a campaign to all of them, SIGTERM:
    time to every socket closed with 1012, to the process's exit, to every
    device welcomed by the other process; the campaign reaches every device
    exactly once and every ack is recorded."""
    from campaigns import lifecycle, sender
    from devices.models import Delivery

    if len(platform.servers) != 2:
        raise SystemExit("drain: run it with --servers 2 (one drains, one takes)")
    # All on one process: no rebalancing, or the idle one takes half first.
    quiet = {"KPNS_REBALANCE_PER_SECOND": "0"}
    if not platform.clients:
        for index in range(2):
            restart_server(platform, index, quiet)
        platform.ops_holder = 0  # type: ignore[attr-defined]
        start_ops_clients(platform, spread=False)
    holder = platform.ops_holder  # type: ignore[attr-defined]
    port, process = platform.servers[holder]
    drained_node = node_of(process.pid)
    before = shares()
    platform.broadcast_command("reset", timeout=30)
    platform.reports()
    load_before = os.getloadavg()[0]

    campaign = lifecycle.campaign_create(
        app=platform.app, name=f"drain {time.time()}", title="Drain", body="x"
    )
    sender.campaign_send_now(campaign=campaign)
    t0 = time.time()
    process.send_signal(signal.SIGTERM)
    exited: dict[str, float] = {}

    def wait_exit() -> None:
        exited["code"] = process.wait(timeout=120)
        exited["at"] = time.time()

    waiter = threading.Thread(target=wait_exit, daemon=True)
    waiter.start()
    state: dict[str, Any] = {}
    deadline = time.monotonic() + RECONNECT_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.5)
        state = closes(platform)
        if state["reconnects"] + state["gave_up"] >= args.devices:
            break
    waiter.join(timeout=60)
    online = platform.wait_online(args.devices, timeout=30)
    after = shares()
    _wait_message(campaign)
    assert campaign.message_id is not None
    message_id = str(campaign.message_id)
    delivered = Delivery.objects.filter(
        message_id=campaign.message_id, delivered_at__isnull=False
    )
    times: dict[str, list[float]] = {}
    out_of_order = 0
    acked = False
    receipt_deadline = time.monotonic() + RECEIPT_TIMEOUT
    while time.monotonic() < receipt_deadline:
        more, late = receipts(platform)
        out_of_order += late
        for mid, stamps in more.items():
            times.setdefault(mid, []).extend(stamps)
        acked = delivered.count() >= args.devices
        if acked and len(times.get(message_id, [])) >= args.devices:
            break
        time.sleep(0.5)
    received = len(times.get(message_id, []))
    # The drained process comes back (empty) and takes the next run's drain
    # target's devices.
    restart_server(platform, holder, quiet)
    platform.ops_holder = 1 - holder  # type: ignore[attr-defined]
    closed_1012 = state["codes"].get("1012", 0)
    return {
        "sockets": before.get(drained_node or "", 0),
        "load_average_1m_before": round(load_before, 2),
        "all_closed_1012_s": round(state["last_close_at"] - t0, 2)
        if state.get("last_close_at")
        else None,
        "first_close_s": round(state["first_close_at"] - t0, 3)
        if state.get("first_close_at", math.inf) < math.inf
        else None,
        "exit_s": round(exited["at"] - t0, 2) if "at" in exited else None,
        "all_reconnected_s": round(state["last_welcome_at"] - t0, 2)
        if state.get("last_welcome_at")
        else None,
        "closes_1012": closed_1012,
        "other_closes": sum(n for code, n in state["codes"].items() if code != "1012"),
        "reconnects": state["reconnects"],
        "gave_up": state["gave_up"],
        "online_after": online,
        "received_once": received,
        "shares_after": sorted(after.values()),
        "checks": {
            "process exited 0": exited.get("code") == 0,
            "every socket closed with 1012": closed_1012 == args.devices,
            "every device reconnected": state["reconnects"] == args.devices,
            "all online on the other process": online == args.devices
            and drained_node not in after
            and len(after) == 1,
            "0 lost, 0 duplicated": received == args.devices and out_of_order == 0,
            "every ack recorded": acked,
        },
    }


# The API during a roll ------------------------------------------------------


def scenario_api_during_roll(
    platform: Platform, args: argparse.Namespace
) -> dict[str, Any]:
    """An integrator posts pushes of TARGETS_PER_PUSH devices at
    --roll-rate a second through gunicorn while the first Daphne process is
    drained (SIGTERM) and started again, as `deploy/kpnsctl roll` does:
    the API's answer times and 5xx, and each push's lag from its due time
    to every target's socket."""
    if not platform.clients:
        start_ops_clients(platform, spread=True)
    platform.broadcast_command("reset", timeout=30)
    platform.reports()
    ids = platform.online_device_ids()
    rng = random.Random(21)
    count = int(args.roll_rate * args.roll_seconds)
    requests = [
        {
            "path": "/api/v1/pushes",
            "body": {
                "device_ids": rng.sample(ids, TARGETS_PER_PUSH),
                "title": "Roll",
                "body": "x",
                "ttl_seconds": 3600,
            },
        }
        for _ in range(count)
    ]
    load: dict[str, Any] = {}

    def post() -> None:
        load.update(platform.http_load(requests, rate=args.roll_rate, connections=32))

    load_before = os.getloadavg()[0]
    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    time.sleep(3)
    port, process = platform.servers[0]
    before = shares()
    rolled = before.get(node_of(process.pid) or "", 0)
    t0 = time.time()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    drained_s = time.time() - t0
    restart_server(platform, 0)
    ready_s = wait_ready(port)
    rolled_s = time.time() - t0
    poster.join(timeout=args.roll_seconds + 300)
    load_after = os.getloadavg()[0]
    results = load["results"]
    accepted = {r["answer"]["message_id"]: r for r in results if r.get("status") == 202}
    times: dict[str, list[float]] = {}
    out_of_order = 0
    deadline = time.monotonic() + RECEIPT_TIMEOUT
    while time.monotonic() < deadline:
        more, late = receipts(platform)
        out_of_order += late
        for mid, stamps in more.items():
            times.setdefault(mid, []).extend(stamps)
        if all(len(times.get(m, [])) >= TARGETS_PER_PUSH for m in accepted):
            break
        time.sleep(0.5)
    state = closes(platform)
    http = [r["done"] - r["scheduled"] for r in results if r.get("done")]
    lags = [t - accepted[m]["scheduled"] for m in accepted for t in times.get(m, [])]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    errors_5xx = sum(n for s, n in statuses.items() if s.startswith("5"))
    lost = sum(max(0, TARGETS_PER_PUSH - len(times.get(m, []))) for m in accepted)
    twice = sum(max(0, len(times.get(m, [])) - TARGETS_PER_PUSH) for m in accepted)
    http_ms, lag_ms = _ms(http), _ms(lags)
    return {
        "devices": len(ids),
        "pushes_offered": count,
        "offered_per_s": args.roll_rate,
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "rolled_sockets": rolled,
        "shares_before": sorted(before.values()),
        "drain_to_exit_s": round(drained_s, 2),
        "restart_ready_s": round(ready_s, 2),
        "roll_s": round(rolled_s, 2),
        "api_p50_ms": http_ms["p50"],
        "api_p99_ms": http_ms["p99"],
        "api_max_ms": http_ms["max"],
        "api_5xx": errors_5xx,
        "api_no_answer": statuses.get("0", 0),
        "statuses": statuses,
        "receipt_lag_p50_ms": lag_ms["p50"],
        "receipt_lag_p99_ms": lag_ms["p99"],
        "receipt_lag_max_ms": lag_ms["max"],
        "closes": state["codes"],
        "reconnects": state["reconnects"],
        "lost": lost,
        "duplicated": twice + out_of_order,
        "shares_after": sorted(shares().values()),
        "checks": {
            "rolled process exited 0": code == 0,
            "every push accepted": len(accepted) == count,
            "0 5xx": errors_5xx == 0,
            "0 lost": lost == 0,
            "0 duplicated": twice == 0 and out_of_order == 0,
            "no device gave up": state["gave_up"] == 0,
        },
    }


RUNNERS = {"drain": scenario_drain, "api-during-roll": scenario_api_during_roll}
