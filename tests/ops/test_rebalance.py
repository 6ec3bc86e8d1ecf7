"""Rebalancing (devices/rebalance.py): a process holding more than its fair
share of the devices sheds the excess with 1012 at a bounded rate, and the
devices spread back over the processes without losing anything."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from devices.models import Device, Node
from tests.devicesim import start_fleet, stop_fleet
from tests.e2e.conftest import redis_url  # noqa: F401  (the shared fixture)
from tests.e2e.servers import daphne_servers
from tests.reliability.conftest import (
    record_figure,
    server_tracebacks,
    wait_for,
    world,
)
from tests.reliability.test_faults import has_all, push_one, until, verdict_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

DEVICES = 200
RATE = 40  # sockets a second


def shares(device_ids) -> dict[str, int]:
    rows = Device.objects.filter(pk__in=list(device_ids), node__isnull=False)
    counts: dict[str, int] = {}
    for node in rows.values_list("node", flat=True):
        counts[node] = counts.get(node, 0) + 1
    return counts


def live_nodes() -> int:
    return Node.objects.filter(draining=False).count()


async def test_devices_all_on_one_process_spread_back_within_60s(
    redis_url,  # noqa: F811
    settings,
    tmp_path,
):
    app, devices = await world(DEVICES)
    ids = [d for d, _t in devices]
    extra = {"KPNS_REBALANCE_PER_SECOND": str(RATE)}
    with daphne_servers(
        2, redis_url=redis_url, tmp_path=tmp_path, extra_env=extra
    ) as servers:
        crowded, empty = servers
        # Every device on one process, as after a roll.
        fleet = await start_fleet([crowded.ws_url], devices)
        try:

            def all_on_one():
                found = shares(ids)
                return live_nodes() >= 2 and sorted(found.values()) == [DEVICES]

            # The idle process must be known alive before the crowd is judged.
            assert await wait_for(all_on_one, 20)
            # Reconnects go where nginx's least_conn would send them: to
            # the process with fewer sockets.
            for sim in fleet:
                sim.urls = [empty.ws_url]
            started = time.monotonic()

            def balanced():
                found = shares(ids)
                return sum(found.values()) == DEVICES and max(found.values()) <= (
                    0.6 * DEVICES
                )

            spread = await wait_for(balanced, 60, interval=0.5)
            assert spread, await database_sync_to_async(shares)(ids)
            took = time.monotonic() - started
            moved = sum(sim.welcomes - 1 for sim in fleet)
            # Nothing is lost on the way: a push to everyone after the move.
            message = await database_sync_to_async(push_one)(app, ids, "after")
            assert await until(lambda: has_all(fleet, [message]), 20)
            await asyncio.sleep(0.5)
            verdict = await verdict_for(fleet, [message])
            verdict.assert_ok()
            closes = [c for sim in fleet for c in sim.log.closes]
            assert set(closes) <= {1012}, set(closes)
            # Bounded: the excess (half the devices) and little more.
            assert moved <= DEVICES * 0.6, moved
        finally:
            await stop_fleet(fleet)
        assert not server_tracebacks([s.output() for s in servers])
    record_figure(
        "rebalance",
        devices=DEVICES,
        rate_per_second=RATE,
        balanced_after_s=round(took, 1),
        reconnects=moved,
    )
