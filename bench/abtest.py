"""A 2-variant A/B campaign with a French version, Send now to every
online device: the time from Send now to the last receipt, each device one
push of its own variant and language (campaigns/content.py)."""

import argparse
import time
from typing import Any

from bench.platform import Platform
from bench.run import percentile
from bench.scenarios import ACK_TIMEOUT, _report_unrecorded

TITLES = {("A", ""): "A: 30% off", ("B", ""): "B: free shipping"}
FRENCH = {"A": "A : -30 %", "B": "B : livraison offerte"}


def scenario_abtest(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    from campaigns import lifecycle, sender
    from campaigns.models import CampaignMessage
    from devices.models import Delivery, Device

    ids = list(
        Device.objects.filter(app=platform.app)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    # Every other device French: four contents, so four messages.
    Device.objects.filter(pk__in=ids[::2]).update(locale="fr-FR")
    Device.objects.filter(pk__in=ids[1::2]).update(locale="en-GB")
    campaign = lifecycle.campaign_create(
        app=platform.app,
        name=f"bench A/B {time.time()}",
        title=TITLES["A", ""],
        body="x",
        split_percent=50,
        variants=[
            {"key": "B", "split_percent": 50, "title": TITLES["B", ""],
             "body": "x", "url": "", "image": "", "data": {}}
        ],
        languages=[
            {"variant": key, "locale": "fr", "title": title}
            for key, title in FRENCH.items()
        ],
    )  # fmt: skip
    cpu_before = platform.cpu_seconds()
    t0 = time.time()
    sender.campaign_send_now(campaign=campaign)
    send_now_s = time.time() - t0
    rows = Delivery.objects.filter(message__campaign_link__campaign=campaign)
    delivered = rows.filter(delivered_at__isnull=False)
    acked_at = None
    deadline = time.monotonic() + ACK_TIMEOUT
    while time.monotonic() < deadline:
        if delivered.count() >= args.devices:
            acked_at = time.time()
            break
        time.sleep(0.05)
    message_ids = [
        str(m)
        for m in CampaignMessage.objects.filter(campaign=campaign).values_list(
            "message_id", flat=True
        )
    ]
    if acked_at is None:
        _report_unrecorded(platform, message_ids)
    cpu_after = platform.cpu_seconds()
    reports = platform.reports()
    times = [
        t
        for report in reports
        for message_id, stamps in report["times"].items()
        if message_id in message_ids
        for t in stamps
    ]
    latencies = sorted(t - t0 for t in times)
    contents = set(
        rows.values_list(
            "message__campaign_link__variant", "message__campaign_link__locale"
        ).distinct()
    )
    devices_targeted = rows.values("device_id").distinct().count()
    return {
        "targeted": rows.count(),
        "messages": len(message_ids),
        "contents": sorted(f"{key}{'-' + loc if loc else ''}" for key, loc in contents),
        "send_now_s": round(send_now_s, 4),
        "received": len(times),
        "p50_s": round(percentile(latencies, 0.5), 4) if latencies else None,
        "last_s": round(latencies[-1], 4) if latencies else None,
        "all_acked_s": round(acked_at - t0, 4) if acked_at else None,
        "server_cpu_s": round(cpu_after["server"] - cpu_before["server"], 2),
        "checks": {
            "0 lost": len(times) == args.devices,
            "one push per device": rows.count() == devices_targeted == args.devices,
            "both variants, French and fallback": contents
            == {("A", ""), ("A", "fr"), ("B", ""), ("B", "fr")},
            "every ack recorded": acked_at is not None,
            "0 disconnected": sum(r["disconnected"] for r in reports) == 0,
        },
    }
