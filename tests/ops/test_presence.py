"""Presence across processes: which node holds which device, online counts
per app in the admin and on /metrics, the node list in the admin, and dead
processes cleaned up within a bound even when no server process is left."""

import asyncio
import re
import signal
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from devices.delivery import housekeeping, presence
from devices.models import Device, Node
from tests.e2e.servers import free_port
from tests.factories import make_app, make_device
from tests.ops.procs import start_scheduler, start_server, stopping
from tests.reliability.conftest import record_figure
from tests.wsclient import DeviceClient


def node_row(name, *, age, draining=False, connections=0):
    now = timezone.now()
    return Node.objects.create(
        name=name,
        channel_name=f"kpns.node.{name}",
        hostname="box-1",
        pid=1234,
        started_at=now - timedelta(hours=1),
        heartbeat_at=now - timedelta(seconds=age),
        connections=connections,
        draining=draining,
    )


@pytest.mark.django_db
def test_node_admin_lists_nodes_with_heartbeat_age_and_state(admin_client):
    app = make_app(name="Shop")
    alive = node_row("alive-node", age=2, connections=2)
    node_row("dead-node", age=120)
    node_row("draining-node", age=1, draining=True)
    for _ in range(2):
        device, _token = make_device(app)
        Device.objects.filter(pk=device.pk).update(node=alive.name, connection_id="c")
    make_device(app)

    page = admin_client.get("/admin/devices/node/")
    assert page.status_code == 200
    text = page.content.decode()
    for name in ("alive-node", "dead-node", "draining-node"):
        assert name in text
    ages = [int(age) for age in re.findall(r"(\d+) s ago", text)]
    assert len(ages) == 3 and max(ages) >= 120 and min(ages) < 10, ages
    assert text.count('alt="True"') >= 2  # alive + alive column of draining
    assert 'alt="False"' in text  # the dead one

    apps = admin_client.get("/admin/devices/app/")
    assert apps.status_code == 200
    assert "online now" in apps.content.decode().lower()
    assert presence.online_by_app()[0]["online"] == 2
    assert presence.online_by_node() == {"alive-node": 2}


@pytest.mark.django_db
def test_scheduler_tick_reaps_dead_nodes_once_it_has_been_healthy(settings):
    settings.KPNS = {
        **settings.KPNS,
        "NODE_DEAD_AFTER_SECONDS": 0.2,
        "NODE_HEARTBEAT_SECONDS": 0.0,
    }
    app = make_app()
    node_row("gone", age=60)
    node_row("here", age=0)
    device, _token = make_device(app)
    Device.objects.filter(pk=device.pk).update(node="gone", connection_id="c")
    housekeeping.reset()
    housekeeping.reap_dead_nodes()  # just started: not healthy long enough to judge
    assert Node.objects.filter(name="gone").exists()
    time.sleep(0.25)
    Node.objects.filter(name="here").update(heartbeat_at=timezone.now())
    housekeeping.reap_dead_nodes()
    assert not Node.objects.filter(name="gone").exists()
    assert Node.objects.filter(name="here").exists()
    assert Device.objects.get(pk=device.pk).node is None
    housekeeping.reset()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_sigkilled_daphne_devices_go_offline_with_only_a_scheduler_left(
    redis_url, tmp_path
):
    dead_after = 3.0
    env = {"KPNS_NODE_DEAD_AFTER_SECONDS": str(dead_after)}
    procs = []
    with stopping(procs):
        server = start_server(
            free_port(), redis_url=redis_url, tmp_path=tmp_path, extra_env=env
        )
        procs.append(server)
        procs.append(
            start_scheduler(redis_url=redis_url, tmp_path=tmp_path, extra_env=env)
        )

        def make():
            app = make_app()
            return [make_device(app) for _ in range(5)]

        devices = await database_sync_to_async(make)()
        ids = [device.pk for device, _ in devices]
        clients = [DeviceClient(server.ws_url, token) for _, token in devices]
        for client in clients:
            await client.connect()

        def online():
            return Device.objects.filter(pk__in=ids, node__isnull=False).count()

        for _ in range(100):
            if await database_sync_to_async(online)() == 5:
                break
            await asyncio.sleep(0.05)
        node = await database_sync_to_async(
            lambda: Device.objects.get(pk=ids[0]).node
        )()
        # The scheduler judges only after dead_after seconds of its own health.
        await asyncio.sleep(dead_after)

        server.signal(signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.to_thread(server.wait, 10)
        offline_after = None
        while time.monotonic() - killed < 20:
            if await database_sync_to_async(online)() == 0:
                offline_after = time.monotonic() - killed
                break
            await asyncio.sleep(0.1)
        assert offline_after is not None, "devices of the killed process stayed online"
        # Heartbeats every 1 s (tests), dead after 3 s, the scheduler checks
        # every heartbeat period: offline within dead_after + 2 periods + slack.
        assert offline_after < dead_after + 3, offline_after
        gone = await database_sync_to_async(
            lambda: not Node.objects.filter(name=node).exists()
        )()
        assert gone
        assert "dead server processes" in procs[1].output()
        for client in clients:
            await client.close()
        record_figure(
            "dead_node_offline_by_scheduler",
            dead_after_s=dead_after,
            offline_after_s=round(offline_after, 2),
        )
