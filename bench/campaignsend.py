"""The campaign send path alone: one plain campaign to `--devices` seeded
devices through campaigns.sender, no sockets (docs/benchmarks.md,
"Campaign send path, round 3").

`--online` marks every device connected and times campaign_send_now (the
online pass, inline, as *Send now* does); otherwise the scheduler's chunks
(send_next_chunk until nothing is due) are timed. Each run starts from the
same state (no deliveries, every seq 0, tables vacuumed) and prints its
time, its statement count and the statements' time by kind. Run against a
database of its own: it empties the apps table.

    DATABASE_URL=postgres://.../bench_campaign python -m bench.campaignsend \\
        --devices 20000 --online --runs 3
"""

import argparse
import collections
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--online", action="store_true")
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _run(args.devices, args.online, args.chunk, args.runs)


def _run(count: int, online: bool, chunk: int, runs: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from bench.platform import seed
    from campaigns import lifecycle, sender
    from devices.models import Delivery, Device

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE devices_app CASCADE")
    app, _tokens = seed(count)
    Device.objects.filter(app=app).update(node="bench-node" if online else None)
    times = []
    for run in range(runs):
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE devices_delivery, devices_messagecount CASCADE")
            cursor.execute("UPDATE devices_device SET last_seq = 0, acked_seq = 0")
            cursor.execute("VACUUM ANALYZE devices_device")
            cursor.execute("VACUUM ANALYZE devices_delivery")
        campaign = lifecycle.campaign_create(
            app=app, name=f"bench {run}", title="Hello", body="x"
        )
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            if online:
                sender.campaign_send_now(campaign=campaign)
            else:
                now = timezone.now()
                lifecycle.campaign_schedule_now(campaign=campaign, now=now)
                while sender.send_next_chunk(now=now, chunk_size=chunk):
                    pass
        elapsed = time.perf_counter() - started
        times.append(elapsed)
        campaign.refresh_from_db()
        rows = Delivery.objects.filter(message_id=campaign.message_id).count()
        by_kind: collections.Counter[str] = collections.Counter()
        for query in queries.captured_queries:
            by_kind[query["sql"][:48]] += float(query["time"])
        print(
            f"run {run}: {elapsed:.2f} s, {len(queries)} statements "
            f"({sum(by_kind.values()):.2f} s), {rows} deliveries, "
            f"load {os.getloadavg()[0]:.2f}"
        )
        for sql, seconds in by_kind.most_common(5):
            print(f"    {seconds:6.2f} s  {sql}")
        assert rows == count, "every device gets the campaign once"
    print(f"median {sorted(times)[len(times) // 2]:.2f} s")


if __name__ == "__main__":
    main()
