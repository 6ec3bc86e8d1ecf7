"""KPNS load harness: `python -m bench.run --scenario broadcast --devices 20000`.

Starts the platform in its production shape (PostgreSQL, Redis, K Daphne
processes, a scheduler) against a dedicated database, seeds devices, opens
their sockets from load-client processes spread over 127.0.0.x source
addresses, runs scenarios, checks every delivery against the database
(nothing lost, nothing twice) and writes JSON plus a Markdown table under
bench/results/. Every loop is bounded in count and time. docs/benchmarks.md
has the figures and the commands.
"""

import argparse
import fcntl
import importlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SOCKETS_PER_CLIENT = 15_000
LOCK_FILE = "/tmp/kpns-bench.lock"  # noqa: S108 - a lock, not data
# bench/ops_scenarios.py: their devices reconnect as the SDKs do, from
# their own load clients (the plain ones are not connected for them).
OPS_SCENARIOS = ("drain", "api-during-roll")
# bench/anchor.py (KPNS beside Mosquitto) and bench/retention.py (retention
# on a seeded table; the stats pages over a big delivery table).
DATA_SCENARIOS = {
    "anchor": "bench.anchor",
    "retention": "bench.retention",
    "pages": "bench.retention",
    # bench/pushpath.py: the targeted push path (sequential, offered rate,
    # concurrent, NDJSON stream), checked against the database.
    "pushpath": "bench.pushpath",
    # bench/abtest.py: a 2-variant A/B campaign with a French version.
    "abtest": "bench.abtest",
}


def configure(args: argparse.Namespace) -> None:
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # The production shape: no query recording, real settings.
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 60)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    # The targeted scenario offers thousands of requests a second with one key.
    os.environ.setdefault("KPNS_API_RATE_PER_MINUTE", "100000000")
    # --register api registers every device from one address, with one key.
    os.environ.setdefault("KPNS_REGISTER_RATE_PER_MINUTE", "100000000")
    os.environ.setdefault("KPNS_REGISTER_ADDRESS_RATE_PER_MINUTE", "100000000")
    sys.path.insert(0, str(ROOT))
    _ensure_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[
            "idle",
            "broadcast",
            "storm",
            "naive",
            "offline",
            "targeted",
            "batch",
            "acks",
            "memory",
            *OPS_SCENARIOS,
            *DATA_SCENARIOS,
        ],
        help="repeatable; default: idle, broadcast, storm",
    )
    parser.add_argument(
        "--roll-rate", type=float, default=50, help="api-during-roll: pushes a second"
    )
    parser.add_argument(
        "--roll-seconds", type=float, default=60, help="api-during-roll: how long"
    )
    parser.add_argument(
        "--anchor-sends", type=int, default=2000, help="anchor: targeted sends"
    )
    parser.add_argument(
        "--rows", type=int, default=10_000_000, help="pages: delivery rows seeded"
    )
    parser.add_argument(
        "--retention-rows",
        type=int,
        default=200_000,
        help="retention: delivery rows seeded (half past retention)",
    )
    parser.add_argument(
        "--rate", type=float, default=500, help="targeted: requests offered per second"
    )
    parser.add_argument(
        "--seconds", type=float, default=10, help="targeted: how long to offer them"
    )
    parser.add_argument(
        "--batches", type=int, default=40, help="batch: requests of 500 pushes"
    )
    parser.add_argument(
        "--seq-sends", type=int, default=2000, help="pushpath: sequential pushes"
    )
    parser.add_argument(
        "--push-connections",
        type=int,
        default=64,
        help="pushpath: connections of the concurrent phase",
    )
    parser.add_argument(
        "--ndjson-pushes", type=int, default=0, help="pushpath: streamed pushes"
    )
    parser.add_argument(
        "--ndjson-lines", type=int, default=5000, help="pushpath: lines per stream"
    )
    parser.add_argument(
        "--ndjson-connections", type=int, default=2, help="pushpath: streams at once"
    )
    parser.add_argument(
        "--campaigns", type=int, default=5, help="acks: campaigns sent back to back"
    )
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument(
        "--register",
        choices=["copy", "api"],
        default="copy",
        help="copy: insert the devices in bulk; api: register each through "
        "POST /api/v1/devices/register, as the device SDKs do",
    )
    parser.add_argument(
        "--servers", type=int, default=2, help="Daphne processes (device sockets)"
    )
    parser.add_argument(
        "--http-workers", type=int, default=2, help="gunicorn workers (admin, API)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sync-pings",
        action="store_true",
        help="every load-client device pings at the same moment, every 20 s "
        "(the harness before: a heartbeat storm); default: each device on its "
        "own timer, as the SDKs do",
    )
    parser.add_argument(
        "--offline",
        type=int,
        default=100_000,
        help="offline scenario: registered devices that are not connected",
    )
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/kpns_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the first server (broadcast; pushpath: and gunicorn)",
    )
    args = parser.parse_args()
    scenarios = args.scenario or ["idle", "broadcast", "storm"]
    # One harness at a time per machine: runs share the bench database and
    # would truncate each other's devices.
    lock = open(LOCK_FILE, "w")  # noqa: SIM115 - held for the whole run
    fcntl.flock(lock, fcntl.LOCK_EX)
    configure(args)

    from bench.platform import Platform

    started = time.time()
    with Platform(
        devices=args.devices,
        servers=args.servers,
        register=args.register,
        http_workers=args.http_workers,
        sync_pings=args.sync_pings,
    ) as platform:
        report: dict[str, Any] = {
            "devices": args.devices,
            "servers": args.servers,
            "http_workers": args.http_workers,
            "runs": args.runs,
            "register": args.register,
            "sync_pings": args.sync_pings,
            "load_average": list(os.getloadavg()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
            "scenarios": {},
        }
        if not set(scenarios) <= set(OPS_SCENARIOS):
            platform.connect_all()
        for name in scenarios:
            from bench import ops_scenarios
            from bench import scenarios as module

            if name in DATA_SCENARIOS:
                module = importlib.import_module(DATA_SCENARIOS[name])
            runner = ops_scenarios.RUNNERS.get(name) or getattr(
                module, f"scenario_{name}"
            )
            runs = [runner(platform, args) for _ in range(args.runs)]
            report["scenarios"][name] = {"runs": runs, "summary": summarize(runs)}
            print(json.dumps({name: report["scenarios"][name]["summary"]}, indent=1))
        report["seconds"] = round(time.time() - started, 1)
        report["load_average_end"] = list(os.getloadavg())
        report["commit"] = _commit()
    write(report, args)
    failures = [
        f"{name}: {check}"
        for name, data in report["scenarios"].items()
        for run in data["runs"]
        for check, ok in run.get("checks", {}).items()
        if not ok
    ]
    if failures:
        print("CORRECTNESS FAILURES:", *failures, sep="\n  ")
        sys.exit(1)
    print("all correctness checks passed")


def _commit() -> str:
    """The commit under test (a copy without .git: KPNS_BENCH_COMMIT)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("KPNS_BENCH_COMMIT", "unknown")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of every numeric figure over the runs."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    summary = {}
    for key in keys:
        values = [run[key] for run in runs if isinstance(run.get(key), int | float)]
        summary[key] = {
            "median": round(statistics.median(values), 4),
            "min": round(min(values), 4),
            "max": round(max(values), 4),
        }
    return summary


def write(report: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{args.label or 'run'}-{args.devices}x{args.servers}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1))
    lines = [
        f"# {stem} ({report['started']} UTC, {report['seconds']} s, "
        f"commit {report.get('commit')}, load average at start "
        f"{report['load_average'][0]:.2f}, at end "
        f"{report['load_average_end'][0]:.2f})",
        "",
    ]
    for name, data in report["scenarios"].items():
        lines += [
            f"## {name}",
            "",
            "| figure | median | min | max |",
            "|---|---|---|---|",
        ]
        for key, value in data["summary"].items():
            lines.append(
                f"| {key} | {value['median']} | {value['min']} | {value['max']} |"
            )
        lines.append("")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / stem}.json and .md")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


if __name__ == "__main__":
    main()
