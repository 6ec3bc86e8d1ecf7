"""Scenarios: each returns one run's figures plus correctness checks."""

import argparse
import sys
import time
from typing import Any

from bench.platform import PY_SPY, Platform
from bench.run import percentile

ACK_TIMEOUT = 120.0


def scenario_idle(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Held sockets: server memory per connection and idle CPU over 10 s."""
    before = platform.cpu_seconds()
    time.sleep(10)
    after = platform.cpu_seconds()
    rss = platform.server_rss()
    # What is held, not what was asked for: under overload some connects fail.
    held = platform.wait_online(args.devices, 5)
    return {
        "sockets": held,
        "server_rss_mb": round(rss / 2**20, 1),
        "rss_per_socket_kb": round(
            (rss - platform.baseline_rss) / max(1, held) / 1024, 2
        ),
        "idle_server_cpu_cores": round((after["server"] - before["server"]) / 10, 3),
        "checks": {"all online": held == args.devices},
    }


def scenario_broadcast(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Send now to every online device; time receipts and acks; check each got one."""
    from campaigns import lifecycle, sender
    from devices.models import Delivery

    campaign = lifecycle.campaign_create(
        app=platform.app, name=f"bench {time.time()}", title="Benchmark", body="x"
    )
    profiler = platform.start_profile("broadcast") if args.profile else None
    cpu_before = platform.cpu_seconds()
    t0 = time.time()
    sender.campaign_send_now(campaign=campaign)
    send_now_s = time.time() - t0
    _wait_message(campaign)
    delivered = Delivery.objects.filter(
        message_id=campaign.message_id, delivered_at__isnull=False
    )
    acked_at = None
    deadline = time.monotonic() + ACK_TIMEOUT
    while time.monotonic() < deadline:
        if delivered.count() >= args.devices:
            acked_at = time.time()
            break
        time.sleep(0.05)
    if acked_at is None:
        _report_unrecorded(platform, [campaign.message_id])
    cpu_after = platform.cpu_seconds()
    if profiler is not None:
        profiler.wait(timeout=120)
    reports = platform.reports()
    times = [t for r in reports for ts in r["times"].values() for t in ts]
    latencies = sorted(t - t0 for t in times)
    rows = Delivery.objects.filter(message_id=campaign.message_id)
    last = latencies[-1] if latencies else float("nan")
    server_cpu = cpu_after["server"] - cpu_before["server"]
    return {
        "targeted": rows.count(),
        # How long Send now took (the online pass's chunks, committed inline).
        "send_now_s": round(send_now_s, 4),
        "received": len(times),
        "first_s": round(latencies[0], 4) if latencies else None,
        "p50_s": round(percentile(latencies, 0.5), 4) if latencies else None,
        "p99_s": round(percentile(latencies, 0.99), 4) if latencies else None,
        "last_s": round(last, 4),
        "all_acked_s": round(acked_at - t0, 4) if acked_at else None,
        "deliveries_per_s": round(len(times) / last, 1) if latencies else 0,
        "deliveries_per_server_cpu_s": round(len(times) / server_cpu, 1)
        if server_cpu
        else None,
        "server_cpu_s": round(server_cpu, 2),
        "client_cpu_s": round(cpu_after["client"] - cpu_before["client"], 2),
        "redis_cpu_s": round(cpu_after["redis"] - cpu_before["redis"], 3),
        "server_rss_mb": round(platform.server_rss() / 2**20, 1),
        "wire_duplicates": sum(r["wire_duplicates"] for r in reports),
        "checks": {
            "0 lost": len(times) == args.devices,
            # Clients keep one receipt per new seq; a repeat is a wire duplicate.
            "0 duplicated": len(times) <= args.devices
            and sum(r["out_of_order"] for r in reports) == 0,
            "every ack recorded": acked_at is not None,
            "0 disconnected": sum(r["disconnected"] for r in reports) == 0,
        },
    }


def scenario_storm(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Every device reconnects at once (as after a restart) with a push sent
    while it was away: handshakes per second, and how long until every
    device has caught up (handshake, auth, hello, replay, ack)."""
    from campaigns import lifecycle, sender
    from devices.models import Delivery

    platform.close_clients()
    platform.wait_offline()
    campaign = lifecycle.campaign_create(
        app=platform.app, name=f"missed {time.time()}", title="Missed", body="x"
    )
    sender.campaign_send_now(campaign=campaign)
    _wait_message(campaign)
    rows = Delivery.objects.filter(message_id=campaign.message_id)
    queued_deadline = time.monotonic() + 120
    while rows.count() < args.devices and time.monotonic() < queued_deadline:
        time.sleep(0.2)  # the offline devices' chunks go through the scheduler
    queued = rows.count()
    if queued < args.devices:
        _report_stall(platform, f"storm: {queued} of {args.devices} deliveries queued")
    profiler = platform.start_profile("storm", seconds=20) if args.profile else None
    started = time.time()
    result = platform.connect_all()
    if profiler is not None:
        profiler.wait(timeout=120)
    times, out_of_order = _receipts_until(
        platform, {str(campaign.message_id)}, timeout=0
    )
    received = times.get(str(campaign.message_id), [])
    deadline = time.monotonic() + ACK_TIMEOUT
    while len(received) < args.devices and time.monotonic() < deadline:
        more, late_out_of_order = _receipts_until(platform, set(), timeout=0)
        received += more.get(str(campaign.message_id), [])
        out_of_order += late_out_of_order
        time.sleep(0.5)
    caught_up = (max(received) - started) if received else None
    return {
        "sockets": result["connected"],
        "seconds": result["seconds"],
        "handshakes_per_s": round(result["connected"] / result["seconds"], 1),
        "all_caught_up_s": round(caught_up, 2) if caught_up else None,
        "queued_before_reconnect": queued,
        "checks": {
            "campaign queued for every device": queued == args.devices,
            "all reconnected": result["failed"] == 0,
            "every device caught up once": len(received) == args.devices
            and out_of_order == 0,
        },
    }


def scenario_naive(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """The same broadcast through one channel-layer group of every consumer."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from bench.naive import GROUP, LAYER

    platform.close_clients()
    platform.wait_offline()
    platform.connect_all("/ws/bench/naive/")
    time.sleep(1)  # group_add is done before accept; let the last ones settle
    layer = get_channel_layer(LAYER)
    cpu_before = platform.cpu_seconds()
    t0 = time.time()
    push = {"id": f"naive-{t0}", "title": "Benchmark", "body": "x"}
    async_to_sync(layer.group_send)(GROUP, {"type": "naive.push", "push": push})
    deadline = time.monotonic() + ACK_TIMEOUT
    times: list[float] = []
    while time.monotonic() < deadline:
        time.sleep(0.5)
        reports = platform.reports()
        times += [t for r in reports for ts in r["times"].values() for t in ts]
        if len(times) >= args.devices:
            break
    cpu_after = platform.cpu_seconds()
    platform.close_clients()
    platform.connect_all()
    latencies = sorted(t - t0 for t in times)
    last = latencies[-1] if latencies else float("nan")
    server_cpu = cpu_after["server"] - cpu_before["server"]
    return {
        "received": len(times),
        "first_s": round(latencies[0], 4) if latencies else None,
        "p50_s": round(percentile(latencies, 0.5), 4) if latencies else None,
        "p99_s": round(percentile(latencies, 0.99), 4) if latencies else None,
        "last_s": round(last, 4),
        "deliveries_per_s": round(len(times) / last, 1) if latencies else 0,
        "server_cpu_s": round(server_cpu, 2),
        "redis_cpu_s": round(cpu_after["redis"] - cpu_before["redis"], 3),
        # The naive layer is at-most-once: losses are reported, not failed.
        "lost": args.devices - len(times),
        "checks": {},
    }


def scenario_offline(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """A campaign to every registered device, most of them offline; then a
    share of the offline ones reconnect and catch up from their inbox."""
    from django.db import connection

    from bench.platform import seed_devices
    from campaigns import lifecycle, sender
    from campaigns.models import Campaign, CampaignStatus
    from devices.models import Delivery

    run = getattr(platform, "offline_runs", 0)
    platform.offline_runs = run + 1
    if run == 0:
        platform.offline_tokens = seed_devices(platform.app, args.offline)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE devices_device")
    returning = platform.offline_tokens[run * args.devices : (run + 1) * args.devices]
    size = "SELECT pg_total_relation_size('devices_delivery')"
    with connection.cursor() as cursor:
        cursor.execute(size)
        bytes_before = cursor.fetchone()[0]
    campaign = lifecycle.campaign_create(
        app=platform.app, name=f"offline {time.time()}", title="Offline", body="x"
    )
    t0 = time.time()
    sender.campaign_send_now(campaign=campaign)
    _wait_message(campaign)
    rows = Delivery.objects.filter(message_id=campaign.message_id)
    acked = rows.filter(delivered_at__isnull=False)
    sent_at = online_acked = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not (sent_at and online_acked):
        if not online_acked and acked.count() >= args.devices:
            online_acked = time.time()
        status = Campaign.objects.get(pk=campaign.pk).status
        if not sent_at and status == CampaignStatus.SENT:
            sent_at = time.time()
        time.sleep(0.1)
    online_reports = platform.reports()
    online_received = sum(len(ts) for r in online_reports for ts in r["times"].values())
    with connection.cursor() as cursor:
        cursor.execute(size)
        bytes_after = cursor.fetchone()[0]
    # The reconnect: devices that were offline at send time come back.
    clients = platform.start_clients(returning, "/ws/v1/device/", first_source=100)
    started = time.time()
    connected = platform.connect(clients)
    # Devices that stayed offline through earlier runs also missed those
    # runs' campaigns: each must arrive once, this run's included.
    missed = run + 1
    message_id = str(campaign.message_id)
    receipts: dict[str, list[float]] = {}
    while time.monotonic() < deadline and (
        len(receipts.get(message_id, [])) < len(returning)
        or sum(map(len, receipts.values())) < missed * len(returning)
    ):
        time.sleep(0.5)
        for client in clients:
            report = platform.command(client, "report", timeout=60)
            for mid, stamps in report["times"].items():
                receipts.setdefault(mid, []).extend(stamps)
    caught_up = [t for stamps in receipts.values() for t in stamps]
    catch_up_s = (max(caught_up) - started) if caught_up else None
    for client in clients:
        platform.command(client, "close", timeout=60)
        client.wait(timeout=30)
    targeted = rows.count()
    return {
        "registered": args.offline + args.devices,
        "online": args.devices,
        "targeted": targeted,
        "send_all_s": round(sent_at - t0, 2) if sent_at else None,
        "online_all_acked_s": round(online_acked - t0, 2) if online_acked else None,
        "rows_written": targeted,
        "delivery_mb_written": round((bytes_after - bytes_before) / 2**20, 1),
        "reconnected": connected["connected"],
        "reconnect_catch_up_s": round(catch_up_s, 2) if catch_up_s else None,
        "missed_pushes_replayed": len(caught_up),
        "reconnect_per_s": round(len(returning) / catch_up_s, 1) if catch_up_s else 0,
        "checks": {
            "every device targeted": targeted == args.offline + args.devices,
            "online got it once": online_received == args.devices,
            "returning got it once": len(receipts.get(message_id, []))
            == len(returning),
            "returning got every missed push once": len(receipts) == missed
            and all(len(stamps) == len(returning) for stamps in receipts.values()),
        },
    }


def _latencies(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 0.5) * 1000, 2),
        "p99": round(percentile(ordered, 0.99) * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }


def _wait_message(campaign: Any, timeout: float = 60.0) -> None:
    """Refresh the campaign until its message exists.

    The message is created by whoever sends the first chunk: Send now here,
    or the scheduler when its poll locked the due slice first (Send now then
    leaves the sending to it). Read too early, the campaign had no message
    yet, and a scenario counted the acks of message None: every push
    received once, "every ack recorded" failed (CI, 1 run in about 8).
    """
    deadline = time.monotonic() + timeout
    campaign.refresh_from_db()
    while campaign.message_id is None and time.monotonic() < deadline:
        time.sleep(0.05)
        campaign.refresh_from_db()
    assert campaign.message_id is not None, f"campaign {campaign.pk} never started"


def _report_unrecorded(platform: Platform, message_ids: list[Any]) -> None:
    """Evidence for the next reader (an intermittent failure): where the
    unrecorded deliveries stand, what the database waits on, what the
    servers warned about, and where each server's threads are."""
    import subprocess

    from django.db.models import Count

    from devices.models import Delivery

    stuck = (
        Delivery.objects.filter(message_id__in=message_ids, delivered_at__isnull=True)
        .values("status")
        .annotate(n=Count("id"))
    )
    print("acks not all recorded:", list(stuck), file=sys.stderr)
    _report_stall(platform, "database state at the timeout")
    for _port, process in platform.servers:
        dump = subprocess.run(
            [PY_SPY, "dump", "-p", str(process.pid)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        print(dump.stdout[-6000:], dump.stderr[-500:], file=sys.stderr)


def _report_stall(platform: Platform, what: str) -> None:
    """Print what PostgreSQL sessions wait for, and the scheduler's last lines."""
    from django.db import connection

    print(what, file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, wait_event_type, wait_event, "
            "pg_blocking_pids(pid), now() - xact_start, left(query, 160) "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        for row in cursor.fetchall():
            print("  pg:", row, file=sys.stderr)
    log = platform.tmp / "scheduler.log"
    for line in log.read_text(errors="replace").splitlines()[-15:]:
        print("  scheduler:", line, file=sys.stderr)
    # The servers' recent warnings, each distinct message once with a count.
    for server_log in sorted(platform.tmp.glob("server-*.log")):
        seen: dict[str, int] = {}
        for line in server_log.read_text(errors="replace").splitlines():
            if " WARNING " in line or " ERROR " in line:
                message = line.split(" ", 3)[-1][:200]
                seen[message] = seen.pop(message, 0) + 1
        for message, count in list(seen.items())[-20:]:
            print(f"  {server_log.name}: {count}x {message}", file=sys.stderr)


def _receipts_until(
    platform: Platform, wanted: set[str], timeout: float
) -> tuple[dict[str, list[float]], int]:
    """Collect receipts until every wanted message arrived (or timeout)."""
    times: dict[str, list[float]] = {}
    out_of_order = 0
    deadline = time.monotonic() + timeout
    while True:
        for report in platform.reports():
            out_of_order += report["out_of_order"]
            for message_id, stamps in report["times"].items():
                times.setdefault(message_id, []).extend(stamps)
        if wanted <= times.keys() or time.monotonic() > deadline:
            return times, out_of_order
        time.sleep(0.5)


def _slow_by_second(load: dict[str, Any], over: float = 0.1) -> dict[str, Any]:
    """Where the offered-rate latency tail lies in time: per second of the
    run, the requests slower than `over` and the slowest (in ms)."""
    slow: dict[int, list[float]] = {}
    for r in load["results"]:
        if r.get("done") and r["done"] - r["scheduled"] > over:
            second = int(r["scheduled"] - load["started"])
            slow.setdefault(second, []).append(r["done"] - r["scheduled"])
    return {
        str(second): {"count": len(times), "max_ms": round(max(times) * 1000)}
        for second, times in sorted(slow.items())
    }


def scenario_targeted(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Single-device pushes through POST /api/v1/pushes: at a fixed offered
    rate (latency from the request's due time to the socket), then as fast
    as 64 connections allow (requests per second)."""
    import random

    platform.reports()  # start from empty receipts
    ids = platform.online_device_ids()
    rng = random.Random(7)

    def requests(count: int) -> list[dict[str, Any]]:
        return [
            {
                "path": "/api/v1/pushes",
                "body": {"device_ids": [rng.choice(ids)], "title": "T", "body": "x"},
            }
            for _ in range(count)
        ]

    offered = platform.http_load(
        requests(int(args.rate * args.seconds)), rate=args.rate, connections=128
    )
    cpu_before = platform.cpu_seconds()
    closed = platform.http_load(requests(int(args.rate * 6)), rate=0, connections=64)
    cpu_after = platform.cpu_seconds()
    results = offered["results"] + closed["results"]
    accepted = {r["answer"]["message_id"]: r for r in results if r.get("status") == 202}
    # A 503 problem JSON (the database unavailable) did nothing and says
    # "retry": not a loss, the backend knows to resend. gunicorn itself
    # sheds nothing; over capacity requests wait in its listen backlog.
    shed = [
        r
        for r in results
        if r.get("status") == 503 and (r.get("answer") or {}).get("status") == 503
    ]
    times, out_of_order = _receipts_until(platform, set(accepted), timeout=60)
    offered_ids = [
        r["answer"]["message_id"] for r in offered["results"] if r.get("status") == 202
    ]
    e2e = [times[m][0] - accepted[m]["scheduled"] for m in offered_ids if m in times]
    http = [r["done"] - r["scheduled"] for r in offered["results"] if r.get("done")]
    closed_ok = [r for r in closed["results"] if r.get("status") == 202]
    closed_e2e = [
        times[r["answer"]["message_id"]][0] - r["scheduled"]
        for r in closed_ok
        if r["answer"]["message_id"] in times
    ]
    closed_seconds = closed["finished"] - closed["started"]
    span = offered["finished"] - offered["started"]
    e2e_ms, http_ms, max_e2e = _latencies(e2e), _latencies(http), _latencies(closed_e2e)
    return {
        "offered_per_s": args.rate,
        "achieved_per_s": round(len(offered_ids) / span, 1) if span else 0,
        "e2e_p50_ms": e2e_ms["p50"],
        "e2e_p99_ms": e2e_ms["p99"],
        "e2e_max_ms": e2e_ms["max"],
        "http_p50_ms": http_ms["p50"],
        "http_p99_ms": http_ms["p99"],
        "max_requests_per_s": round(len(closed_ok) / closed_seconds, 1),
        "max_rate_e2e_p50_ms": max_e2e["p50"],
        "max_rate_e2e_p99_ms": max_e2e["p99"],
        "server_cpu_per_request_ms": round(
            (cpu_after["server"] - cpu_before["server"])
            / max(1, len(closed_ok))
            * 1000,
            2,
        ),
        "shed_503": len(shed),
        "errors": len(results) - len(accepted) - len(shed),
        "slow_by_second": _slow_by_second(offered),
        "checks": {
            "every request accepted or shed with 503": len(accepted) + len(shed)
            == len(results),
            "0 lost": all(m in times for m in accepted),
            "0 duplicated": all(len(times[m]) == 1 for m in accepted if m in times)
            and out_of_order == 0,
        },
    }


def scenario_batch(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """POST /api/v1/pushes/batch, 500 single-device pushes a request, four
    requests at a time: pushes delivered per second, request to socket."""
    import random

    platform.reports()
    ids = platform.online_device_ids()
    rng = random.Random(11)
    requests = [
        {
            "path": "/api/v1/pushes/batch",
            "body": {
                "messages": [
                    {"device_ids": [rng.choice(ids)], "title": "B", "body": "x"}
                    for _ in range(500)
                ]
            },
        }
        for _ in range(args.batches)
    ]
    cpu_before = platform.cpu_seconds()
    report = platform.http_load(requests, rate=0, connections=4)
    accepted = [
        item["message_id"]
        for r in report["results"]
        if r.get("status") == 200
        for item in r["answer"]["results"]
        if item["status"] == 202
    ]
    times, out_of_order = _receipts_until(platform, set(accepted), timeout=120)
    cpu_after = platform.cpu_seconds()
    last = max((ts[0] for ts in times.values()), default=report["started"])
    seconds = last - report["started"]
    http = [r["done"] - r["scheduled"] for r in report["results"] if r.get("done")]
    http_ms = _latencies(http)
    total = len(requests) * 500
    return {
        "pushes": total,
        "accepted": len(accepted),
        "delivered": len([m for m in accepted if m in times]),
        "seconds_to_last_receipt": round(seconds, 3),
        "pushes_delivered_per_s": round(len(times) / seconds, 1) if seconds else 0,
        "request_p50_ms": http_ms["p50"],
        "request_p99_ms": http_ms["p99"],
        "server_cpu_s": round(cpu_after["server"] - cpu_before["server"], 2),
        "checks": {
            "every push accepted": len(accepted) == total,
            "0 lost": all(m in times for m in accepted),
            "0 duplicated": all(len(times[m]) == 1 for m in accepted if m in times)
            and out_of_order == 0,
        },
    }


def scenario_acks(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Ack storm: several campaigns back to back to every online device, each
    push acked at once; acks recorded per second, and ping round trips of
    sampled sockets meanwhile (do sockets stall while acks are written?)."""
    import threading

    from campaigns import lifecycle, sender
    from devices.models import Delivery

    platform.reports()
    quiet = platform.rtts()
    during: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            during.extend(platform.rtts())
            stop.wait(0.2)

    campaigns = [
        lifecycle.campaign_create(
            app=platform.app, name=f"acks {n} {time.time()}", title=f"Ack {n}", body="x"
        )
        for n in range(args.campaigns)
    ]
    cpu_before = platform.cpu_seconds()
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    t0 = time.time()
    for campaign in campaigns:
        sender.campaign_send_now(campaign=campaign)
    message_ids = []
    for campaign in campaigns:
        _wait_message(campaign)
        message_ids.append(campaign.message_id)
    expected = args.devices * len(campaigns)
    delivered = Delivery.objects.filter(
        message_id__in=message_ids, delivered_at__isnull=False
    )
    recorded_at = None
    deadline = time.monotonic() + ACK_TIMEOUT
    while time.monotonic() < deadline:
        if delivered.count() >= expected:
            recorded_at = time.time()
            break
        time.sleep(0.1)
    stop.set()
    prober.join(timeout=30)
    if recorded_at is None:
        _report_unrecorded(platform, message_ids)
    cpu_after = platform.cpu_seconds()
    reports = platform.reports()
    received = sum(len(ts) for r in reports for ts in r["times"].values())
    seconds = (recorded_at or time.time()) - t0
    quiet_ms, during_ms = _latencies(quiet), _latencies(during)
    return {
        "acks": expected,
        "all_recorded_s": round(seconds, 3) if recorded_at else None,
        "acks_recorded_per_s": round(expected / seconds, 1) if recorded_at else 0,
        "rtt_quiet_p50_ms": quiet_ms["p50"],
        "rtt_quiet_p99_ms": quiet_ms["p99"],
        "rtt_storm_p50_ms": during_ms["p50"],
        "rtt_storm_p99_ms": during_ms["p99"],
        "rtt_storm_max_ms": during_ms["max"],
        "server_cpu_s": round(cpu_after["server"] - cpu_before["server"], 2),
        "checks": {
            "every push received once": received == expected
            and sum(r["out_of_order"] for r in reports) == 0,
            "every ack recorded": recorded_at is not None,
            "no ping unanswered": all(t < 10 for t in during),
        },
    }


def scenario_memory(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """What an idle socket holds, by object type (bench/memsnap.py).

    Needs KPNS_BENCH_MEMSNAP=1: the first server counts its objects with
    every socket closed, then again once all have reconnected and said
    hello; the difference divided by its sockets is one idle socket.
    """
    import json
    import os
    import signal

    from bench.memsnap import snapshot_path

    if os.environ.get("KPNS_BENCH_MEMSNAP") != "1":
        print("memory: skipped, run with KPNS_BENCH_MEMSNAP=1", file=sys.stderr)
        return {"skipped": "KPNS_BENCH_MEMSNAP is not 1", "checks": {}}
    pid = platform.server_pids()[0]
    path = snapshot_path(pid)
    platform.close_clients()
    platform.wait_offline()
    time.sleep(2)

    def snapshot() -> dict[str, Any]:
        path.unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 120
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(0.5)
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    snapshot()
    rss_before = platform.server_rss()
    platform.connect_all()
    time.sleep(3)
    data = snapshot()
    rss_after = platform.server_rss()
    held = platform.wait_online(args.devices, 5)
    per_server = held / max(1, platform.server_count)
    return {
        "sockets": held,
        "sockets_on_counted_server": per_server,
        "rss_per_socket_kb": round((rss_after - rss_before) / max(1, held) / 1024, 2),
        "objects_kb_per_socket": round(data["size_diff"] / per_server / 1024, 2),
        "protocol_attributes": data.get("protocol_attributes"),
        "by_type": [
            {
                "type": entry["type"],
                "bytes_per_socket": round(entry["bytes"] / per_server),
                "objects_per_socket": round(entry["objects"] / per_server, 2),
            }
            for entry in data["by_type"]
        ],
        "checks": {"all online": held == args.devices},
    }
