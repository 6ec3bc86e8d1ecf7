"""Provider send rate of one process against the local receivers.

`python -m bench.nativerate --provider apns --messages 3000 --concurrency 64`

The receiver (tests/native/receivers.py: it verifies every JWT, decrypts
every Web Push body) runs in a child process; this process sends through
``dispatch.NativeDispatcher`` with `--concurrency` workers, each sending
one message after the other (a closed loop, so the latency is one send's,
not a queue's), and prints messages/s, p50/p99 of a send and, with
`--profile`, the functions the sender spends its CPU in (cProfile).
"""

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _receiver(provider: str, conn: Any, subscriptions: int) -> None:
    from tests.native.receivers import ApnsService, FcmService, WebPushService

    service: Any = {
        "webpush": WebPushService,
        "fcm": FcmService,
        "apns": ApnsService,
    }[provider]()
    service.start()
    info: dict[str, Any] = {"url": service.url}
    if provider == "webpush":
        info["subs"] = [
            (s.endpoint, s.p256dh, s.auth)
            for s in (service.subscribe() for _ in range(subscriptions))
        ]
    elif provider == "fcm":
        info["account"] = service.service_account()
        info["project"] = service.project_id
    else:
        info["key"] = (service.p8(), service.key_id, service.team_id)
        info["bundle"] = service.bundle_id
    conn.send(info)
    conn.recv()  # until told to stop
    conn.send({"received": len(service.received), "errors": service.errors[:3]})
    service.stop()


def _deliveries(provider: str, info: dict[str, Any], count: int) -> list[Any]:
    from devices.native import apns
    from devices.native.dispatch import NativeDelivery, ProviderKeys
    from devices.native.message import NativeMessage
    from devices.native.webpush import vapid_keys_generate

    _public, vapid = vapid_keys_generate()
    keys = ProviderKeys(
        vapid_private_pem=vapid,
        fcm_project_id=info.get("project", ""),
        fcm_account=info.get("account"),
        apns_key=apns.ApnsKey(*info["key"], info["bundle"])
        if provider == "apns"
        else None,
    )
    built = []
    for i in range(count):
        message = NativeMessage(
            id=str(uuid.uuid4()),
            seq=i + 1,
            title="Your order shipped",
            body="Arrives Tuesday",
            data={"order": i},
            ttl_seconds=3600,
        )
        extra: dict[str, Any] = {}
        if provider == "webpush":
            endpoint, p256dh, auth = info["subs"][i % len(info["subs"])]
            extra = {"endpoint": endpoint, "p256dh": p256dh, "auth": auth}
        else:
            extra = {"token": f"{i:064x}"}
        built.append(NativeDelivery(kind=provider, message=message, keys=keys, **extra))
    return built


async def _run(
    deliveries: list[Any], concurrency: int
) -> tuple[float, list[float], Any]:
    from devices.native import dispatch

    sender = dispatch.dispatcher()
    queue = list(reversed(deliveries))
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def worker() -> None:
        while queue:
            delivery = queue.pop()
            started = time.perf_counter()
            [result] = await sender.send([delivery])
            latencies.append(time.perf_counter() - started)
            statuses[result.status] = statuses.get(result.status, 0) + 1

    # One send first: the FCM token exchange and the connections.
    await sender.send(deliveries[:1])
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await dispatch.dispatcher_close()
    return elapsed, latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--provider", choices=["webpush", "fcm", "apns"])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings

    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(
        target=_receiver, args=(args.provider, child, 64), daemon=True
    )
    process.start()
    info = parent.recv()
    settings.KPNS = {
        **settings.KPNS,
        "WEBPUSH_HOSTS": ["127.0.0.1"],
        "FCM_BASE_URL": info["url"],
        "FCM_TOKEN_URL": f"{info['url']}/token",
        "APNS_BASE_URL_PRODUCTION": info["url"],
        "NATIVE_CONCURRENCY": args.concurrency,
    }
    deliveries = _deliveries(args.provider, info, args.messages)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    cpu = time.process_time()
    elapsed, latencies, statuses = asyncio.run(_run(deliveries, args.concurrency))
    cpu = time.process_time() - cpu
    if profiler:
        profiler.disable()
    parent.send("stop")
    receiver = parent.recv()
    process.join(10)
    latencies.sort()
    figures = {
        "provider": args.provider,
        "messages": len(latencies),
        "concurrency": args.concurrency,
        "messages_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "sender_cpu_ms_per_message": round(cpu / len(latencies) * 1000, 2),
        "statuses": statuses,
        "receiver": receiver,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(figures))
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        print(out.getvalue())


if __name__ == "__main__":
    main()
