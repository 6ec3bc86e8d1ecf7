"""Scenarios: each returns one run's figures plus correctness checks."""

import argparse
import time
from typing import Any

from bench.platform import Platform
from bench.run import percentile

ACK_TIMEOUT = 120.0


def scenario_idle(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Held sockets: server memory per connection and idle CPU over 10 s."""
    before = platform.cpu_seconds()
    time.sleep(10)
    after = platform.cpu_seconds()
    rss = platform.server_rss()
    return {
        "sockets": args.devices,
        "server_rss_mb": round(rss / 2**20, 1),
        "rss_per_socket_kb": round(
            (rss - platform.baseline_rss) / args.devices / 1024, 2
        ),
        "idle_server_cpu_cores": round((after["server"] - before["server"]) / 10, 3),
        "checks": {"all online": platform.wait_online(args.devices, 5) == args.devices},
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
    campaign.refresh_from_db()
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
    """Every device reconnects at once (as after a restart): handshakes/s."""
    platform.close_clients()
    platform.wait_offline()
    result = platform.connect_all()
    return {
        "sockets": result["connected"],
        "seconds": result["seconds"],
        "handshakes_per_s": round(result["connected"] / result["seconds"], 1),
        "checks": {"all reconnected": result["failed"] == 0},
    }


def scenario_naive(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """The same broadcast through one channel-layer group of every consumer."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from bench.naive import GROUP

    platform.close_clients()
    platform.wait_offline()
    platform.connect_all("/ws/bench/naive/")
    time.sleep(1)  # group_add is done before accept; let the last ones settle
    layer = get_channel_layer()
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
    campaign.refresh_from_db()
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
    caught_up = []
    while time.monotonic() < deadline and len(caught_up) < len(returning):
        time.sleep(0.5)
        for client in clients:
            report = platform.command(client, "report", timeout=60)
            caught_up += [t for ts in report["times"].values() for t in ts]
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
        "reconnect_per_s": round(len(caught_up) / catch_up_s, 1) if catch_up_s else 0,
        "checks": {
            "every device targeted": targeted == args.offline + args.devices,
            "online got it once": online_received == args.devices,
            "returning got it once": len(caught_up) == len(returning),
        },
    }
