"""Redis behind Sentinel (REDIS_SENTINELS): the servers find the master
through Sentinel and follow a failover during a broadcast; nothing is lost
or shown twice (the durable inbox and the node sweep cover lost wake-ups)."""

import asyncio
import logging
import re
import time
from collections import Counter

import httpx
import pytest
from channels.db import database_sync_to_async

from campaigns import lifecycle, sender
from devices.delivery import metrics, pushes, wakeups
from devices.models import Delivery, DeliveryStatus, Device
from tests.e2e.servers import free_port
from tests.factories import make_app, make_device
from tests.ops.fleet import Device as FleetDevice
from tests.ops.fleet import Fleet
from tests.ops.procs import start_scheduler, start_server, stopping
from tests.ops.sentinel import sentinel_set
from tests.reliability.conftest import record_figure

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEVICES = 30
NOT_SENT = re.compile(r"channel layer: wake-up to node (\S+) not sent")
RESUMED = re.compile(r"channel layer: sends to node (\S+) resumed after (\d+) failed")


def layer_send_errors() -> float:
    """This process's failed layer sends. Read from the counter itself: the
    whole registry's collection runs /metrics's database queries, which an
    async test may not make on its event loop."""
    for family in metrics.LAYER_ERRORS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("op") == "send":
                return sample.value
    return 0.0


def outage_lines(lines):
    """Per node: wake-up warnings, resumes, and the failures the resumes name."""
    warned: Counter[str] = Counter()
    resumed: Counter[str] = Counter()
    failed = 0
    for line in lines:
        if found := NOT_SENT.search(line):
            warned[found[1]] += 1
        if found := RESUMED.search(line):
            resumed[found[1]] += 1
            failed += int(found[2])
    return warned, resumed, failed


def assert_one_warning_per_node_per_outage(lines):
    """A failover used to log ~190 `wake-up to node ... not sent` lines:
    now one per node until sends to it resume (wakeups._failing)."""
    warned, resumed, _failed = outage_lines(lines)
    for node, count in warned.items():
        assert count <= resumed[node] + 1, (node, count, resumed[node])
        # One failover is one outage, two at most if it flapped.
        assert count <= 2, (node, count)


def world(count):
    app = make_app()
    return app, [make_device(app) for _ in range(count)]


def campaign(app):
    created = lifecycle.campaign_create(
        app=app,
        name="Failover",
        title="Failover",
        audience_kind="all",
        ttl_seconds=3600,
        throttle_per_second=10,
    )
    created = sender.campaign_send_now(campaign=created)
    created.refresh_from_db()
    return str(created.message_id)


def push_all(app, ids, index):
    message, _ = pushes.push_to_devices(
        app=app, device_ids=ids, title=f"push {index}", ttl_seconds=3600
    )
    return str(message.pk)


@pytest.mark.parametrize("how", ["failover", "kill"])
async def test_sentinel_failover_during_a_broadcast_loses_nothing(
    how, settings, redis_url, tmp_path, caplog, monkeypatch
):
    """`failover`: SENTINEL FAILOVER (planned); `kill`: the master SIGKILLed.
    Wake-ups that fail meanwhile are counted in kpns_channel_layer_errors_total
    and logged once per node per outage."""
    caplog.set_level(logging.INFO, logger="devices.delivery.wakeups")
    monkeypatch.setattr(wakeups, "_failing", {})
    errors_before = layer_send_errors()
    with sentinel_set() as redis_ha:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [redis_ha.layer_host()], "capacity": 20_000},
            }
        }
        procs = []
        with stopping(procs):
            servers = [
                start_server(
                    free_port(),
                    redis_url=redis_url,
                    tmp_path=tmp_path,
                    extra_env=redis_ha.env,
                    args=(),
                )
                for _ in range(2)
            ]
            procs += servers
            procs.append(
                start_scheduler(
                    redis_url=redis_url, tmp_path=tmp_path, extra_env=redis_ha.env
                )
            )
            app, devices = await database_sync_to_async(world)(DEVICES)
            ids = [device.pk for device, _ in devices]
            fleet_devices = [
                FleetDevice(device.pk, token, url=lambda i=i: servers[i % 2].ws_url)
                for i, (device, token) in enumerate(devices)
            ]
            async with Fleet(fleet_devices) as fleet:
                assert await fleet.all_connected(30)
                for _ in range(100):
                    online = await database_sync_to_async(
                        Device.objects.filter(pk__in=ids, node__isnull=False).count
                    )()
                    if online == DEVICES:
                        break
                    await asyncio.sleep(0.05)
                health = await asyncio.to_thread(
                    httpx.get, f"{servers[0].http_url}/healthz", timeout=10
                )
                assert health.status_code == 200, health.text

                sent_at: dict[str, float] = {}
                message_ids = [await database_sync_to_async(campaign)(app)]
                sent_at[message_ids[0]] = time.monotonic()

                async def keep_pushing():
                    for index in range(24):
                        mid = await database_sync_to_async(push_all)(app, ids, index)
                        sent_at[mid] = time.monotonic()
                        message_ids.append(mid)
                        await asyncio.sleep(0.25)

                pusher = asyncio.ensure_future(keep_pushing())
                await asyncio.sleep(1.5)
                old_master = redis_ha.master_port()
                failover_at = time.monotonic()
                await asyncio.to_thread(
                    redis_ha.failover if how == "failover" else redis_ha.kill_master
                )
                promoted = None
                for _ in range(200):
                    port = await asyncio.to_thread(redis_ha.master_port)
                    if port != old_master:
                        promoted = time.monotonic() - failover_at
                        break
                    await asyncio.sleep(0.05)
                assert promoted is not None, "Sentinel did not fail over"
                await asyncio.wait_for(pusher, 60)
                everything = set(message_ids)
                for _ in range(400):
                    if fleet.have(everything):
                        break
                    await asyncio.sleep(0.1)

            for device in fleet_devices:
                seqs = [seq for seq, _ in device.seen]
                assert {m for _, m in device.seen} == everything, (
                    f"{device.device_id} missing "
                    f"{len(everything - {m for _, m in device.seen})}"
                )
                assert seqs == list(range(1, len(everything) + 1))
            # The latest a push sent after the failover took to reach everyone.
            after = [m for m in message_ids if sent_at[m] >= failover_at]
            recovery = max(
                max(d.received_at[m] for d in fleet_devices) - sent_at[m] for m in after
            )
            sockets_lost = sum(len(d.closes) for d in fleet_devices)

            def all_delivered():
                statuses = set(
                    Delivery.objects.filter(
                        message_id__in=list(everything)
                    ).values_list("status", flat=True)
                )
                return statuses == {DeliveryStatus.DELIVERED}

            for _ in range(100):
                if await database_sync_to_async(all_delivered)():
                    break
                await asyncio.sleep(0.1)
            assert await database_sync_to_async(all_delivered)()
            health = await asyncio.to_thread(
                httpx.get, f"{servers[1].http_url}/healthz", timeout=10
            )
            assert health.status_code == 200, health.text
            # The servers now talk to the promoted master.
            new_master = redis_ha.client(redis_ha.master_port())
            assert new_master.info("clients")["connected_clients"] >= 3
            assert new_master.info("replication")["role"] == "master"
            # This process sent the pushes' wake-ups, the scheduler the
            # campaign's: each warns once per node per outage, and every
            # failed send is counted.
            ours = [r.getMessage() for r in caplog.records]
            assert_one_warning_per_node_per_outage(ours)
            scheduler_log = procs[2].output().splitlines()
            assert_one_warning_per_node_per_outage(scheduler_log)
            warned, _resumed, failed = outage_lines(ours)
            still_failing = sum(wakeups._failing.values())
            counted = layer_send_errors() - errors_before
            assert counted == failed + still_failing, (counted, failed, still_failing)
            assert counted >= sum(warned.values())
            record_figure(
                f"sentinel_{how}",
                wakeup_warnings=sum(warned.values()),
                wakeups_failed=int(counted),
                devices=DEVICES,
                messages=len(everything),
                promoted_after_s=round(promoted, 2),
                worst_push_after_failover_s=round(recovery, 2),
                sockets_closed=sockets_lost,
            )
