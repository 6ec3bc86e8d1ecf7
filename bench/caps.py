"""The frequency cap's cost on a seeded ledger (docs/benchmarks.md,
"Frequency caps").

Seeds `--rows` CappedPush rows (default 1,000,000) over `--devices`
device ids (default 200,000: 5 counted pushes each), spread over the last
30 days, with one INSERT ... SELECT; then times, for a chunk of 5,000
devices, the one cap query a campaign chunk runs (caps.capped_devices,
median and max of 7) and the ledger write of the chunk (rolled back), and
prints the query's plan. Run against a database of its own:

    DATABASE_URL=postgres://.../bench_caps python -m bench.caps
"""

import argparse
import os
import re
import statistics
import time
from datetime import timedelta

REPEATS = 7
CHUNK = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=200_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _run(args.rows, args.devices)


def _run(rows: int, devices: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from devices.delivery import caps
    from devices.models import CappedPush

    now = timezone.now()
    table = CappedPush._meta.db_table
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {table}")  # noqa: S608 - a model's own table
        # Device i gets rows i, i + devices, ...: uuids from md5(i).
        cursor.execute(
            f"INSERT INTO {table} (device_id, sent_at) "  # noqa: S608
            "SELECT md5((g %% %s)::text)::uuid, "
            "%s - (random() * interval '30 days') FROM generate_series(1, %s) g",
            [devices, now, rows],
        )
        # Autovacuum would: the visibility map lets the scans skip the heap.
        cursor.execute(f"VACUUM ANALYZE {table}")  # noqa: S608
        cursor.execute(
            "SELECT md5(g::text)::uuid FROM generate_series(0, %s) g",
            [CHUNK - 1],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
    seeded = time.monotonic() - started
    cap = caps.FrequencyCap(3, timedelta(days=1))
    with connection.cursor() as cursor:
        query = caps.capped_query(ids, cap=cap, now=now).query
        sql, params = query.sql_with_params()
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = "\n".join(
            re.sub(r"'\{[^}]*\}'", "'{...}'", row[0]) for row in cursor.fetchall()
        )
        cursor.execute("SELECT pg_relation_size(%s), pg_indexes_size(%s)", [table] * 2)
        heap, indexes = cursor.fetchone()
    # The writes below are rolled back: they run last, as their aborted
    # rows cost the index-only scans heap visits until the next vacuum.
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        capped = caps.capped_devices(ids, cap=cap, now=now)
        times.append(time.perf_counter() - t0)
    writes = []
    for _ in range(REPEATS):
        with transaction.atomic():
            t0 = time.perf_counter()
            caps.pushes_record(ids, now=now)
            writes.append(time.perf_counter() - t0)
            transaction.set_rollback(True)
    print(f"seeded {rows:,} rows over {devices:,} devices in {seeded:.1f} s")
    print(f"table {heap / 2**20:.0f} MB, indexes {indexes / 2**20:.0f} MB")
    print(
        f"cap check, {CHUNK:,} devices: median {statistics.median(times) * 1000:.1f}"
        f" ms, max {max(times) * 1000:.1f} ms; {len(capped):,} capped"
    )
    print(
        f"ledger write, {CHUNK:,} rows: median "
        f"{statistics.median(writes) * 1000:.1f} ms, max {max(writes) * 1000:.1f} ms"
    )
    print(plan)


if __name__ == "__main__":
    main()
