"""The targeted push path, driven as integrators drive it (issue 19).

`python -m bench.run --scenario pushpath --devices 10000 --servers 2`.
Every push is a `POST /api/v1/pushes` (or a batch, or an NDJSON stream)
to gunicorn with an API key, to one random connected device, which acks
it per protocol; every figure is from the request to the device's receipt
or to the ack recorded in PostgreSQL, and every run checks, against the
database, that each accepted push has exactly one delivery row and that
row is delivered, and that each device received it once.

Phases of one run:

* sequential: `--seq-sends` pushes on one keep-alive connection, each sent
  after the previous one's 202 (p50/p99 request to receipt, sends/s);
* offered: `--rate` pushes a second for `--seconds`, open loop over 128
  connections (p50/p99 from the moment a push was due to its receipt);
* concurrent: `--rate * 6` pushes as fast as `--push-connections`
  connections allow (accepted to acked per second: first request to the
  last ack recorded);
* ndjson: `--ndjson-pushes` pushes in `POST /api/v1/pushes/stream`
  bodies of `--ndjson-lines` lines, `--ndjson-connections` at a time
  (accepted per second, and accepted to acked per second); skipped with 0.

With `--profile`, py-spy records every gunicorn worker and the first
Daphne process during the sequential and the concurrent phases (raw
stacks under bench/results/, summarised by `summarize_profile`).
"""

import argparse
import json
import random
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from bench.platform import PY_SPY, ROOT, Platform
from bench.run import percentile

ACK_TIMEOUT = 120.0


def scenario_pushpath(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Sequential, offered-rate, concurrent and streamed targeted pushes."""
    ids = platform.online_device_ids()
    rng = random.Random(17)
    figures: dict[str, Any] = {"devices_online": len(ids)}
    checks: dict[str, bool] = {}
    phases = [
        ("seq", lambda: _sequential(platform, args, ids, rng)),
        ("offered", lambda: _offered(platform, args, ids, rng)),
        ("conc", lambda: _concurrent(platform, args, ids, rng)),
    ]
    if args.ndjson_pushes:
        phases.append(("ndjson", lambda: _ndjson(platform, args, ids, rng)))
    for name, phase in phases:
        result = phase()
        for key, value in result.items():
            if key == "checks":
                checks.update({f"{name}: {k}": v for k, v in value.items()})
            else:
                figures[f"{name}_{key}"] = value
    figures["load_average"] = round(psutil.getloadavg()[0], 2)
    figures["checks"] = checks
    return figures


def _push(ids: list[str], rng: random.Random, title: str = "T") -> dict[str, Any]:
    return {"device_ids": [rng.choice(ids)], "title": title, "body": "x"}


def _requests(ids: list[str], rng: random.Random, count: int) -> list[dict[str, Any]]:
    return [{"path": "/api/v1/pushes", "body": _push(ids, rng)} for _ in range(count)]


def _sequential(
    platform: Platform, args: argparse.Namespace, ids: list[str], rng: random.Random
) -> dict[str, Any]:
    platform.reports()
    profilers = _profile(platform, "seq") if args.profile else []
    load = platform.http_load(
        _requests(ids, rng, args.seq_sends), rate=0, connections=1
    )
    _stop(profilers)
    accepted = _accepted(load)
    times, out_of_order = _receipts(platform, set(accepted))
    e2e = [times[m][0] - r["scheduled"] for m, r in accepted.items() if m in times]
    http = [r["done"] - r["scheduled"] for r in load["results"] if r.get("done")]
    span = load["finished"] - load["started"]
    return {
        "sends": args.seq_sends,
        "per_s": round(len(accepted) / span, 1) if span else None,
        **_ms("http", http),
        **_ms("e2e", e2e),
        "checks": _checks(accepted, times, out_of_order, len(load["results"])),
    }


def _offered(
    platform: Platform, args: argparse.Namespace, ids: list[str], rng: random.Random
) -> dict[str, Any]:
    platform.reports()
    count = int(args.rate * args.seconds)
    load = platform.http_load(
        _requests(ids, rng, count), rate=args.rate, connections=128
    )
    accepted = _accepted(load)
    times, out_of_order = _receipts(platform, set(accepted))
    e2e = [times[m][0] - r["scheduled"] for m, r in accepted.items() if m in times]
    http = [r["done"] - r["scheduled"] for r in load["results"] if r.get("done")]
    span = load["finished"] - load["started"]
    return {
        "rate": args.rate,
        "achieved_per_s": round(len(accepted) / span, 1) if span else None,
        **_ms("http", http),
        **_ms("e2e", e2e),
        "checks": _checks(accepted, times, out_of_order, count),
    }


def _concurrent(
    platform: Platform, args: argparse.Namespace, ids: list[str], rng: random.Random
) -> dict[str, Any]:
    platform.reports()
    count = int(args.rate * 6)
    profilers = _profile(platform, "conc") if args.profile else []
    cpu_before = platform.cpu_seconds()
    load = platform.http_load(
        _requests(ids, rng, count), rate=0, connections=args.push_connections
    )
    _stop(profilers)
    accepted = _accepted(load)
    acked_at = _wait_acked(list(accepted))
    cpu_after = platform.cpu_seconds()
    times, out_of_order = _receipts(platform, set(accepted))
    e2e = [times[m][0] - r["scheduled"] for m, r in accepted.items() if m in times]
    span = load["finished"] - load["started"]
    acked_span = (acked_at - load["started"]) if acked_at else None
    return {
        "connections": args.push_connections,
        "accepted_per_s": round(len(accepted) / span, 1) if span else None,
        "acked_per_s": round(len(accepted) / acked_span, 1) if acked_span else None,
        **_ms("e2e", e2e),
        "server_cpu_ms_per_push": round(
            (cpu_after["server"] - cpu_before["server"]) / max(1, len(accepted)) * 1000,
            3,
        ),
        "checks": {
            **_checks(accepted, times, out_of_order, count),
            "every ack recorded": acked_at is not None,
        },
    }


def _ndjson(
    platform: Platform, args: argparse.Namespace, ids: list[str], rng: random.Random
) -> dict[str, Any]:
    platform.reports()
    per = args.ndjson_lines
    bodies = [
        "".join(
            json.dumps(_push(ids, rng, "N")) + "\n"
            for _ in range(min(per, args.ndjson_pushes - start))
        )
        for start in range(0, args.ndjson_pushes, per)
    ]
    requests = [
        {"path": "/api/v1/pushes/stream", "raw": body, "type": "application/x-ndjson"}
        for body in bodies
    ]
    cpu_before = platform.cpu_seconds()
    load = platform.http_load(requests, rate=0, connections=args.ndjson_connections)
    accepted: dict[str, Any] = {}
    for result in load["results"]:
        if result.get("status") != 200:
            continue
        for line in result["answer"]["lines"]:
            if line.get("status") == 202:
                accepted[line["message_id"]] = result
    answered = load["finished"] - load["started"]
    acked_at = _wait_acked(list(accepted))
    cpu_after = platform.cpu_seconds()
    times, out_of_order = _receipts(platform, set(accepted))
    acked_span = (acked_at - load["started"]) if acked_at else None
    return {
        "pushes": args.ndjson_pushes,
        "lines_per_request": per,
        "accepted_per_s": round(len(accepted) / answered, 1) if answered else None,
        "acked_per_s": round(len(accepted) / acked_span, 1) if acked_span else None,
        "server_cpu_ms_per_push": round(
            (cpu_after["server"] - cpu_before["server"]) / max(1, len(accepted)) * 1000,
            3,
        ),
        "checks": {
            **_checks(accepted, times, out_of_order, args.ndjson_pushes),
            "every ack recorded": acked_at is not None,
        },
    }


def _accepted(load: dict[str, Any]) -> dict[str, Any]:
    return {
        r["answer"]["message_id"]: r for r in load["results"] if r.get("status") == 202
    }


def _receipts(
    platform: Platform, wanted: set[str]
) -> tuple[dict[str, list[float]], int]:
    from bench.scenarios import _receipts_until

    return _receipts_until(platform, wanted, timeout=60)


def _wait_acked(message_ids: list[str]) -> float | None:
    """When every accepted push's delivery was recorded delivered (bounded)."""
    from devices.models import Delivery

    if not message_ids:
        return None
    rows = Delivery.objects.filter(
        message_id__in=message_ids, delivered_at__isnull=False
    )
    deadline = time.monotonic() + ACK_TIMEOUT
    while time.monotonic() < deadline:
        if rows.count() >= len(message_ids):
            return time.time()
        time.sleep(0.02)
    return None


def _checks(
    accepted: dict[str, Any],
    times: dict[str, list[float]],
    out_of_order: int,
    expected: int,
) -> dict[str, bool]:
    """Received once by the device, and in the database exactly one delivery
    row per accepted push, recorded delivered."""
    from django.db.models import Count

    from devices.models import Delivery

    rows = {
        str(row["message_id"]): row
        for row in Delivery.objects.filter(message_id__in=list(accepted))
        .values("message_id")
        .annotate(n=Count("id"), acked=Count("delivered_at"))
    }
    return {
        "every push accepted": len(accepted) == expected,
        "0 lost (device)": all(m in times for m in accepted),
        "0 duplicated (device)": all(len(times[m]) == 1 for m in accepted if m in times)
        and out_of_order == 0,
        "one delivery row each (database)": len(rows) == len(accepted)
        and all(row["n"] == 1 for row in rows.values()),
    }


def _ms(prefix: str, values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"{prefix}_p50_ms": None, f"{prefix}_p99_ms": None}
    ordered = sorted(values)
    return {
        f"{prefix}_p50_ms": round(percentile(ordered, 0.5) * 1000, 2),
        f"{prefix}_p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
    }


# Profiles --------------------------------------------------------------------


def _profile(platform: Platform, phase: str) -> list[subprocess.Popen]:
    """py-spy on every gunicorn worker and the first Daphne process until
    _stop (raw collapsed stacks, one file per process)."""
    assert platform.http is not None
    workers = [c.pid for c in psutil.Process(platform.http.pid).children()]
    targets = [("http", pid) for pid in workers] + [
        ("daphne", platform.server_pids()[0])
    ]
    stamp = int(time.time())
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    processes = []
    for kind, pid in targets:
        path = out / f"profile-push-{phase}-{kind}-{pid}-{stamp}.txt"
        processes.append(
            subprocess.Popen(
                [PY_SPY, "record", "--pid", str(pid), "--format", "raw"]
                + ["--output", str(path), "--nonblocking", "--rate", "200"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(1.5)  # let py-spy attach before the work starts
    return processes


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(2)  # SIGINT: py-spy writes its output and exits
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def summarize_profile(paths: list[Path], top: int = 25) -> list[tuple[str, float]]:
    """Inclusive share of samples per function over raw py-spy files,
    idle threads (waiting in select/epoll/locks) left out."""
    idle = ("select (", "poll (", "wait (", "_wait_for_tstate_lock", "accept (")
    inclusive: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if not frames or any(frames[-1].startswith(i) for i in idle):
                continue
            n = int(count)
            total += n
            for frame in set(frames):
                inclusive[frame] += n
    return [
        (frame, round(100 * n / total, 1)) for frame, n in inclusive.most_common(top)
    ]


if __name__ == "__main__":
    import sys

    for frame, share in summarize_profile([Path(p) for p in sys.argv[1:]], 45):
        print(f"{share:5.1f}%  {frame}")
