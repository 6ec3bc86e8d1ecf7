"""Graceful drain: SIGTERM makes a Daphne process stop listening, close its
sockets with 1012 (service restart), write the acks it got, mark what is left
offline and exit 0. A rolling restart of every process (both Daphnes and the
scheduler) during a broadcast, behind nginx, loses nothing and shows nothing
twice to the app."""

import asyncio
import json
import signal
import time

import pytest
from channels.db import database_sync_to_async

from campaigns import lifecycle, sender
from devices.delivery import pushes
from devices.models import Delivery, DeliveryStatus, Device, Node
from tests.e2e.servers import free_port
from tests.factories import make_app, make_device
from tests.ops.fleet import Device as FleetDevice
from tests.ops.fleet import Fleet
from tests.ops.procs import (
    client_tls,
    nginx_in_front,
    start_scheduler,
    start_server,
    stopping,
    wait_port_free,
)
from tests.reliability.conftest import record_figure
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEVICES = 40
PUSHES = 12
ENV = {"LOG_FORMAT": "json", "KPNS_DRAIN_SECONDS": "10"}


def world(count):
    app = make_app()
    return app, [make_device(app) for _ in range(count)]


def throttled_campaign(app):
    campaign = lifecycle.campaign_create(
        app=app,
        name="Rolling",
        title="Rolling",
        audience_kind="all",
        ttl_seconds=3600,
        throttle_per_second=8,
    )
    campaign = sender.campaign_send_now(campaign=campaign)
    campaign.refresh_from_db()
    return str(campaign.message_id)


def push_all(app, ids, index):
    message, _ = pushes.push_to_devices(
        app=app, device_ids=ids, title=f"push {index}", ttl_seconds=3600
    )
    return str(message.pk)


def tracebacks(text):
    return [
        line
        for line in text.splitlines()
        if "Traceback" in line or "Exception inside application" in line
    ]


async def wait_for(check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await database_sync_to_async(check)()
        if value:
            return value
        await asyncio.sleep(0.1)
    return await database_sync_to_async(check)()


async def test_sigterm_closes_with_1012_and_leaves_no_presence(
    redis_url, redis_layer, tmp_path
):
    port = free_port()
    procs = []
    with stopping(procs):
        server = start_server(port, redis_url=redis_url, tmp_path=tmp_path)
        procs.append(server)
        # The node (and its row) starts with the process, before any socket.
        assert await wait_for(
            lambda: Node.objects.filter(pid=server.pid, draining=False).exists(), 10
        )
        _app, devices = await database_sync_to_async(world)(3)
        clients = [DeviceClient(server.ws_url, token) for _, token in devices]
        for client in clients:
            await client.connect()
        ids = [device.pk for device, _ in devices]
        assert await wait_for(
            lambda: Device.objects.filter(pk__in=ids, node__isnull=False).count() == 3,
            10,
        )
        node = await database_sync_to_async(
            lambda: Device.objects.get(pk=ids[0]).node
        )()

        started = time.monotonic()
        server.signal(signal.SIGTERM)
        codes = []
        for client in clients:
            with pytest.raises(Exception) as closed:  # noqa: PT011, B017
                while True:
                    await client.receive(timeout=10)
            codes.append(closed.value.rcvd.code)
        assert codes == [1012, 1012, 1012]
        assert await asyncio.to_thread(server.wait, 15) == 0
        drained = time.monotonic() - started
        assert drained < 5, drained

        def forgotten():
            return (
                not Device.objects.filter(pk__in=ids, node__isnull=False).exists()
                and not Node.objects.filter(name=node).exists()
            )

        assert await database_sync_to_async(forgotten)()
        assert "node drained" in server.output()
        assert not tracebacks(server.output()), server.output()
        record_figure("drain_3_devices", seconds=round(drained, 3))


async def test_rolling_restart_during_a_broadcast_loses_nothing(
    redis_url, redis_layer, tmp_path
):
    ports = [free_port(), free_port()]
    procs = []
    with stopping(procs):
        servers = [
            start_server(port, redis_url=redis_url, tmp_path=tmp_path, extra_env=ENV)
            for port in ports
        ]
        procs += servers
        scheduler = start_scheduler(redis_url=redis_url, tmp_path=tmp_path)
        procs.append(scheduler)
        with nginx_in_front(ports, tmp_path) as proxy:
            tls = client_tls(proxy.prefix / "cert.pem")
            app, devices = await database_sync_to_async(world)(DEVICES)
            ids = [device.pk for device, _ in devices]
            fleet_devices = [
                FleetDevice(device.pk, token, url=lambda: proxy.ws_url, ssl=tls)
                for device, token in devices
            ]
            async with Fleet(fleet_devices) as fleet:
                assert await fleet.all_connected(30)
                assert await wait_for(
                    lambda: (
                        Device.objects.filter(pk__in=ids, node__isnull=False)
                        .values("node")
                        .distinct()
                        .count()
                        == 2
                    ),
                    10,
                ), "the fleet is not spread over both processes"

                message_ids = [await database_sync_to_async(throttled_campaign)(app)]

                async def keep_pushing():
                    for index in range(PUSHES):
                        message_ids.append(
                            await database_sync_to_async(push_all)(app, ids, index)
                        )
                        await asyncio.sleep(0.5)

                pusher = asyncio.ensure_future(keep_pushing())
                drains = []
                for index, port in enumerate(ports):
                    await asyncio.sleep(1.0)
                    old = servers[index]
                    started = time.monotonic()
                    old.signal(signal.SIGTERM)
                    assert await asyncio.to_thread(old.wait, 30) == 0
                    drains.append(round(time.monotonic() - started, 3))
                    await asyncio.to_thread(wait_port_free, port)
                    new = await asyncio.to_thread(
                        start_server,
                        port,
                        redis_url=redis_url,
                        tmp_path=tmp_path,
                        extra_env=ENV,
                        tag="-restarted",
                    )
                    procs.append(new)
                scheduler.signal(signal.SIGTERM)
                assert await asyncio.to_thread(scheduler.wait, 30) == 0
                procs.append(
                    start_scheduler(redis_url=redis_url, tmp_path=tmp_path, tag="-2")
                )
                await asyncio.wait_for(pusher, 60)
                everything = set(message_ids)
                for _ in range(600):
                    if fleet.have(everything):
                        break
                    await asyncio.sleep(0.1)

            missing = {
                str(d.device_id): len(everything - {m for _, m in d.seen})
                for d in fleet_devices
                if not everything <= {m for _, m in d.seen}
            }
            assert not missing, f"devices missing messages: {missing}"
            for device in fleet_devices:
                seqs = [seq for seq, _ in device.seen]
                # Exactly once and in order, as the app sees it.
                assert seqs == list(range(1, len(everything) + 1)), (device, seqs)
                assert len({m for _, m in device.seen}) == len(everything)
                # Nobody was told "replaced" (4409): a draining process never
                # connects a device after it reconnected elsewhere.
                assert 4409 not in device.closes, device.closes
            moved = sum(device.closes.count(1012) for device in fleet_devices)
            assert moved >= DEVICES, f"only {moved} sockets were told to move"

            def all_delivered():
                rows = Delivery.objects.filter(message_id__in=list(everything))
                statuses = list(rows.values_list("status", flat=True))
                return len(statuses) == DEVICES * len(everything) and set(statuses) == {
                    DeliveryStatus.DELIVERED
                }

            assert await wait_for(all_delivered, 20), "not every delivery delivered"

        logs = "".join(proc.output() for proc in procs)
        assert not tracebacks(logs), tracebacks(logs)
        reports = [
            json.loads(line)
            for proc in procs
            for line in proc.output().splitlines()
            if line.startswith("{") and '"event": "drain"' in line
        ]
        assert len(reports) == 2, reports
        wire = sum(device.wire for device in fleet_devices)
        record_figure(
            "rolling_restart",
            devices=DEVICES,
            messages=len(everything),
            drain_seconds=drains,
            drain_reports=[
                (r["sockets"], r["left_open"], r["seconds"]) for r in reports
            ],
            redelivered_on_wire=wire - DEVICES * len(everything),
            sockets_moved=moved,
        )
