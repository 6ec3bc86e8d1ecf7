"""Fault injection on real processes, on loopback, each bounded in time.

Every scenario runs real Daphne processes (and a scheduler where campaigns
are involved) against private Redis / PostgreSQL instances or the test
database, drives simulated devices that reconnect and resume
(tests/devicesim.py), and ends with the receipt checker's verdict
(tests/receipts.py). Measured recovery times go to
var/reliability-figures.jsonl and are quoted in docs/guarantees.md.
"""

import asyncio
import os
import signal
import time

import httpx
import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from campaigns import lifecycle, sender
from devices.delivery import pushes
from devices.models import Device
from devices.models import Node as NodeRow
from tests.devicesim import start_fleet, stop_fleet
from tests.e2e.servers import daphne_servers, scheduler_process
from tests.receipts import check, rows_from_orm
from tests.reliability.conftest import (
    online_count,
    record_figure,
    server_tracebacks,
    wait_for,
    world,
)
from tests.reliability.services import private_redis

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
    pytest.mark.timeout(180),
]


def use_layer(settings, redis_url: str) -> None:
    """Point this test process's channel layer at a private Redis."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": redis_url,
                        "socket_timeout": 10,
                        "socket_connect_timeout": 3,
                    }
                ],
                "capacity": 20_000,
                "expiry": 30,
            },
        }
    }


def has_all(fleet, message_ids) -> bool:
    wanted = set(message_ids)
    return all(wanted <= {r.message_id for r in sim.log.receipts} for sim in fleet)


async def until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


def last_receipt(fleet, message_ids) -> float:
    wanted = set(message_ids)
    return max(
        min(r.at for r in sim.log.receipts if r.message_id == mid)
        for sim in fleet
        for mid in wanted
    )


async def verdict_for(fleet, message_ids=None):
    rows = await database_sync_to_async(rows_from_orm)([s.log.device_id for s in fleet])
    return check([s.log for s in fleet], rows, message_ids=message_ids)


def new_campaign(app, **fields):
    fields = {
        "name": "Broadcast",
        "title": "Broadcast",
        "body": "to everyone",
        "audience_kind": "all",
        "ttl_seconds": 3600,
        **fields,
    }
    campaign = lifecycle.campaign_create(app=app, **fields)
    campaign = sender.campaign_send_now(campaign=campaign)
    # Send now covers the devices online at that moment; the scheduler (not
    # running in these tests) sends the rest: a device dropped by the churn
    # at that instant was otherwise never targeted (soak: owed 14,999 of
    # 15,000).
    sender.send_due(now=timezone.now())
    campaign.refresh_from_db()
    return str(campaign.message_id)


def push_one(app, device_ids, title):
    message, _count = pushes.push_to_devices(
        app=app, device_ids=list(device_ids), title=title, ttl_seconds=3600
    )
    return str(message.pk)


async def test_redis_killed_mid_broadcast_then_restarted_empty(settings, tmp_path):
    """(a) Every online device ends with the campaign exactly once, within
    30 s of Redis coming back, with no KPNS process restarted."""
    with private_redis() as redis:
        use_layer(settings, redis.url)
        app, devices = await world(300)
        ids = [d for d, _t in devices]
        with (
            daphne_servers(2, redis_url=redis.url, tmp_path=tmp_path) as servers,
            scheduler_process(redis_url=redis.url, tmp_path=tmp_path),
        ):
            fleet = await start_fleet([s.ws_url for s in servers], devices)
            try:
                assert await wait_for(lambda: online_count(ids) == len(ids), 20)
                # 100 devices per chunk, one chunk a second: a 3 s broadcast.
                message_id = await database_sync_to_async(new_campaign)(
                    app, throttle_per_second=100
                )
                await asyncio.sleep(0.5)
                redis.kill()
                killed_at = time.monotonic()
                await asyncio.sleep(3)
                redis.start()
                back_at = time.monotonic()
                assert await until(lambda: has_all(fleet, [message_id]), 30), (
                    await verdict_for(fleet, [message_id])
                ).summary()
                recovery = max(0.0, last_receipt(fleet, [message_id]) - back_at)
                # A push after the restart travels through the new Redis.
                later = await database_sync_to_async(push_one)(app, ids[:50], "after")
                sent = time.monotonic()
                assert await until(lambda: has_all(fleet[:50], [later]), 10)
                after_latency = last_receipt(fleet[:50], [later]) - sent
                await asyncio.sleep(0.5)  # acks of the last frames
                verdict = await verdict_for(fleet, [message_id, later])
                verdict.assert_ok()
                assert verdict.owed == len(ids) + 50
                assert all(sim.welcomes == 1 for sim in fleet)  # no socket lost
                record_figure(
                    "redis_killed_mid_broadcast",
                    devices=len(ids),
                    redis_down_s=round(back_at - killed_at, 2),
                    all_delivered_after_redis_back_s=round(recovery, 2),
                    next_push_latency_s=round(after_latency, 3),
                    wire_duplicates=verdict.wire_duplicates,
                )
            finally:
                await stop_fleet(fleet)
            assert not server_tracebacks([s.output() for s in servers])


async def test_daphne_killed_devices_move_to_the_others_and_presence_heals(
    settings, tmp_path
):
    """(b) SIGKILL one of three Daphnes: its devices reconnect elsewhere with
    backoff and jitter and get what was sent meanwhile; the dead node's
    devices that do not come back are marked offline within
    NODE_DEAD_AFTER_SECONDS."""
    dead_after = 3.0
    with private_redis() as redis:
        use_layer(settings, redis.url)
        app, devices = await world(250)
        roaming, pinned = devices[:240], devices[240:]
        extra = {"KPNS_NODE_DEAD_AFTER_SECONDS": str(dead_after)}
        with daphne_servers(
            3, redis_url=redis.url, tmp_path=tmp_path, extra_env=extra
        ) as servers:
            urls = [s.ws_url for s in servers]
            victim, survivors = servers[0], servers[1:]
            fleet = await start_fleet(urls, roaming)
            stay_away = await start_fleet([victim.ws_url], pinned)
            everyone = fleet + stay_away
            ids = [d for d, _t in devices]
            try:
                assert await wait_for(lambda: online_count(ids) == len(ids), 20)
                on_victim = [s for s in fleet if s.url == victim.ws_url]
                assert on_victim
                victim_node = await database_sync_to_async(
                    lambda: Device.objects.get(pk=pinned[0][0]).node
                )()
                victim.process.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                first = await database_sync_to_async(push_one)(app, ids, "during")
                await asyncio.sleep(1.0)
                second = await database_sync_to_async(push_one)(app, ids, "later")
                assert await until(lambda: has_all(fleet, [first, second]), 30), (
                    await verdict_for(fleet, [first, second])
                ).summary()
                moved = max(last_receipt(on_victim, [first, second]) - killed_at, 0.0)
                # The devices that cannot come back are marked offline.
                pinned_ids = [d for d, _t in pinned]
                assert await wait_for(
                    lambda: online_count(pinned_ids) == 0, dead_after + 10
                )
                offline_after = time.monotonic() - killed_at
                assert not await database_sync_to_async(
                    NodeRow.objects.filter(name=victim_node).exists
                )()
                # ... and get everything once they can reach a live server.
                for sim in stay_away:
                    sim.urls = [s.ws_url for s in survivors]
                assert await until(lambda: has_all(everyone, [first, second]), 30)
                await asyncio.sleep(0.5)
                verdict = await verdict_for(everyone, [first, second])
                verdict.assert_ok()
                assert verdict.owed == 2 * len(ids)
                record_figure(
                    "daphne_sigkill",
                    devices=len(ids),
                    on_killed_node=len(on_victim) + len(pinned),
                    all_moved_and_delivered_s=round(moved, 2),
                    dead_node_devices_offline_s=round(offline_after, 2),
                    node_dead_after_s=dead_after,
                    wire_duplicates=verdict.wire_duplicates,
                )
            finally:
                await stop_fleet(everyone)
            assert not server_tracebacks([s.output() for s in survivors])


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run manage.py in a child process (for the private database)."""
    import subprocess
    import sys

    from tests.e2e.servers import ROOT

    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


MAKE_WORLD = """
import json
from datetime import timedelta
from django.utils import timezone
from campaigns import lifecycle
from devices.registry import services as registry
app = registry.app_create(name="Outage")
out = {"client_key": app.client_key, "devices": []}
for _ in range(COUNT):
    r = registry.device_register(client_key=app.client_key, platform="android")
    out["devices"].append([str(r.device.pk), r.token])
campaign = lifecycle.campaign_create(
    app=app, name="After the outage", title="After the outage",
    audience_kind="all", ttl_seconds=3600,
)
lifecycle.campaign_schedule(
    campaign=campaign, send_at=timezone.now() + timedelta(seconds=DUE)
)
out["campaign"] = campaign.pk
print("WORLD" + json.dumps(out))
"""


def problem_or_fail(response: httpx.Response) -> dict:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503
    return body


async def test_postgres_stopped_api_503_sockets_stay_open_delivery_resumes(
    tmp_path,
):
    """(c) PostgreSQL stopped for OUTAGE seconds (a private cluster)."""
    import json

    import psycopg

    from tests.e2e.servers import child_env
    from tests.reliability.services import private_postgres

    outage = float(os.environ.get("KPNS_FAULT_PG_OUTAGE_SECONDS", "20"))
    with private_redis() as redis, private_postgres() as pg:
        env = child_env(
            redis.url,
            {
                "DATABASE_URL": pg.url,
                "KPNS_NODE_DEAD_AFTER_SECONDS": "5",
                "KPNS_IDLE_TIMEOUT_SECONDS": "300",
            },
        )
        manage(env, "migrate", "--noinput")
        # The campaign falls due in the middle of the outage.
        script = MAKE_WORLD.replace("COUNT", "100").replace("DUE", "12")
        out = manage(env, "shell", "-c", script)
        world_data = json.loads(out.split("WORLD", 1)[1])
        devices = [(d, t) for d, t in world_data["devices"]]
        with (
            daphne_servers(
                2,
                redis_url=redis.url,
                tmp_path=tmp_path,
                extra_env={
                    k: env[k]
                    for k in (
                        "DATABASE_URL",
                        "KPNS_NODE_DEAD_AFTER_SECONDS",
                        "KPNS_IDLE_TIMEOUT_SECONDS",
                    )
                },
            ) as servers,
            scheduler_process(
                redis_url=redis.url,
                tmp_path=tmp_path,
                extra_env={"DATABASE_URL": pg.url},
            ),
        ):
            fleet = await start_fleet([s.ws_url for s in servers], devices)
            http = httpx.AsyncClient(base_url=servers[0].http_url, timeout=10)
            try:
                await asyncio.sleep(1.5)  # presence and a heartbeat or two
                pg.stop("fast")
                stopped_at = time.monotonic()
                # The API answers 503 problem JSON, quickly, and creates nothing.
                started = time.monotonic()
                response = await http.post(
                    "/api/v1/devices/register",
                    json={"client_key": world_data["client_key"], "platform": "ios"},
                )
                api_seconds = time.monotonic() - started
                problem_or_fail(response)
                assert response.headers.get("Retry-After")
                started = time.monotonic()
                response = await http.get(
                    "/api/v1/device",
                    headers={"Authorization": f"Device {devices[0][1]}"},
                )
                problem_or_fail(response)
                auth_seconds = time.monotonic() - started
                health = await http.get("/readyz")
                assert health.status_code == 503
                assert not health.json()["checks"]["database"]["ok"]
                # Liveness never depends on PostgreSQL: nothing to restart.
                assert (await http.get("/healthz")).status_code == 200
                # New handshakes: accepted only to be closed with 4503.
                handshake_seconds = await refused_for_now(
                    servers[1].ws_url, devices[1][1], timeout=10
                )
                await asyncio.sleep(max(0.0, outage - (time.monotonic() - stopped_at)))
                pg.start()
                back_at = time.monotonic()

                healthy = await seconds_until_healthy(http, back_at)
                assert healthy is not None

                # Delivery resumes by itself: the campaign that fell due
                # during the outage reaches every device.
                def campaign_message():
                    with psycopg.connect(
                        pg.url.replace("postgres://", "postgresql://")
                    ) as c:
                        row = c.execute(
                            "SELECT message_id::text FROM campaigns_campaign "
                            "WHERE id = %s",
                            [world_data["campaign"]],
                        ).fetchone()
                        return row[0] if row else None

                message_id = await first_value(campaign_message)
                assert message_id, "the campaign did not start after the outage"
                assert await until(lambda: has_all(fleet, [message_id]), 30)
                delivered_after = last_receipt(fleet, [message_id]) - back_at
                # Open sockets stayed open through the outage.
                assert all(sim.welcomes == 1 for sim in fleet), [
                    sim.log.closes for sim in fleet if sim.welcomes != 1
                ][:5]
                await asyncio.sleep(1.0)  # last acks and presence

                def verdict_rows():
                    from tests.receipts import rows_from_sql

                    dsn = pg.url.replace("postgres://", "postgresql://")
                    with psycopg.connect(dsn) as c, c.cursor() as cur:
                        rows = rows_from_sql(cur, [d for d, _t in devices])
                        cur.execute("SELECT count(*) FROM devices_device")
                        count = cur.fetchone()[0]
                        cur.execute(
                            "SELECT count(*) FROM devices_device WHERE node IS NULL"
                        )
                        offline = cur.fetchone()[0]
                        cur.execute(
                            "SELECT count(*) FROM devices_delivery "
                            "WHERE status NOT IN ('delivered', 'opened')"
                        )
                        unacked = cur.fetchone()[0]
                    return rows, count, offline, unacked

                rows, count, offline, unacked = await asyncio.to_thread(verdict_rows)
                assert count == len(devices)  # the 503 registration left nothing
                assert offline == 0  # presence survived the outage
                assert unacked == 0  # acks buffered during it were written
                verdict = check([s.log for s in fleet], rows, message_ids=[message_id])
                verdict.assert_ok()
                assert verdict.owed == len(devices)
                record_figure(
                    "postgres_stopped",
                    devices=len(devices),
                    outage_s=round(back_at - stopped_at, 1),
                    api_503_s=round(api_seconds, 3),
                    api_auth_503_s=round(auth_seconds, 3),
                    handshake_4503_s=round(handshake_seconds, 3),
                    healthz_ok_after_s=round(healthy, 2),
                    campaign_delivered_after_s=round(delivered_after, 2),
                )
                assert api_seconds < 5 and auth_seconds < 5
            finally:
                await http.aclose()
                await stop_fleet(fleet)
            assert not server_tracebacks([s.output() for s in servers])


async def refused_for_now(url: str, token: str, timeout: float) -> float:
    """Seconds until a new handshake is accepted only to be closed with 4503.

    The client says hello at once, as SDKs do: a hello that reached the
    socket being closed raised AttributeError in the server (no codec).
    """
    import websockets

    started = time.monotonic()
    async with websockets.connect(
        url,
        subprotocols=["kpns.json.v1", f"kpns.token.{token}"],
        open_timeout=timeout,
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.send('{"type":"hello","last_seq":0}')
            await ws.send('{"type":"ping","t":1}')
            await asyncio.wait_for(ws.recv(), timeout)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4503
    return time.monotonic() - started


async def seconds_until_healthy(http, since: float, timeout: float = 30):
    """Seconds from `since` until /readyz answers 200, or None."""
    while time.monotonic() < since + timeout:
        if (await http.get("/readyz")).status_code == 200:
            return time.monotonic() - since
        await asyncio.sleep(0.2)
    return None


async def first_value(fetch, timeout: float = 30):
    """Call `fetch` in a thread until it returns something (errors: None)."""
    deadline = time.monotonic() + timeout
    value = None
    while value is None and time.monotonic() < deadline:
        value = await asyncio.to_thread(_quietly, fetch)
        if value is None:
            await asyncio.sleep(0.2)
    return value


def _quietly(func):
    try:
        return func()
    except Exception:
        return None


async def test_redis_that_stops_answering_blocks_nothing(settings, tmp_path):
    """(d) Redis behind a proxy that accepts and black-holes: sockets,
    heartbeats and /healthz keep answering, handshakes work, wake-ups time
    out within their bound and the sweep delivers; after healing, traffic
    flows through Redis again."""
    from tests.reliability.services import BlackholeProxy
    from tests.wsclient import DeviceClient

    with private_redis() as redis:
        proxy = BlackholeProxy(redis.port).start()
        proxy_url = f"redis://127.0.0.1:{proxy.port}/0"
        try:
            use_layer(settings, proxy_url)
            app, devices = await world(60)
            ids = [d for d, _t in devices]
            with daphne_servers(2, redis_url=proxy_url, tmp_path=tmp_path) as servers:
                urls = [s.ws_url for s in servers]
                fleet = await start_fleet(urls, devices[:50])
                http = httpx.AsyncClient(base_url=servers[0].http_url, timeout=15)
                probe = DeviceClient(urls[0], devices[50][1])
                try:
                    await probe.connect()
                    assert await wait_for(lambda: online_count(ids[:51]) == 51, 20)
                    proxy.blackhole()
                    black_at = time.monotonic()
                    # A push sent now: its wake-up times out, the sweep delivers.
                    sent = time.monotonic()
                    during = await database_sync_to_async(push_one)(
                        app, ids[:50], "during"
                    )
                    send_seconds = time.monotonic() - sent
                    # The event loops are free: ping/pong, /healthz, handshakes.
                    from devices.delivery.protocol import Ping, Pong

                    started = time.monotonic()
                    await probe.send(Ping(t=1))
                    pong = await probe.receive(timeout=3)
                    ping_seconds = time.monotonic() - started
                    assert isinstance(pong, Pong)
                    started = time.monotonic()
                    health = await http.get("/readyz")
                    health_seconds = time.monotonic() - started
                    assert health.status_code == 503
                    assert not health.json()["checks"]["channel_layer"]["ok"]
                    assert (await http.get("/healthz")).status_code == 200
                    late = DeviceClient(urls[1], devices[51][1])
                    started = time.monotonic()
                    await late.connect()
                    handshake_seconds = time.monotonic() - started
                    await late.close()
                    assert await until(lambda: has_all(fleet, [during]), 15)
                    delivered_black = last_receipt(fleet, [during]) - sent
                    await asyncio.sleep(max(0.0, 12 - (time.monotonic() - black_at)))
                    proxy.heal()
                    healed_at = time.monotonic()
                    # Wake-ups travel through Redis again (well under the sweep).
                    recovered = None
                    while time.monotonic() < healed_at + 40:
                        status = (await http.get("/readyz")).status_code
                        if status == 200:
                            recovered = time.monotonic() - healed_at
                            break
                        await asyncio.sleep(0.5)
                    assert recovered is not None, "layer did not recover"
                    after = await database_sync_to_async(push_one)(
                        app, ids[:50], "after"
                    )
                    assert await until(lambda: has_all(fleet, [after]), 15)
                    await asyncio.sleep(0.5)
                    verdict = await verdict_for(fleet, [during, after])
                    verdict.assert_ok()
                    assert all(sim.welcomes == 1 for sim in fleet)
                    record_figure(
                        "redis_blackholed",
                        devices=50,
                        push_call_blocked_s=round(send_seconds, 2),
                        ping_rtt_s=round(ping_seconds, 3),
                        healthz_s=round(health_seconds, 2),
                        handshake_s=round(handshake_seconds, 3),
                        delivered_while_black_s=round(delivered_black, 2),
                        layer_healthy_after_heal_s=round(recovered, 1),
                    )
                    assert ping_seconds < 1.0
                    assert health_seconds < 5.0
                    assert handshake_seconds < 3.0
                    assert send_seconds < 5.0
                finally:
                    await probe.close()
                    await http.aclose()
                    await stop_fleet(fleet)
                assert not server_tracebacks([s.output() for s in servers])
        finally:
            proxy.close()


async def test_postgres_that_drops_packets_blocks_nothing(tmp_path):
    """(d') PostgreSQL whose packets are dropped in the kernel (no RST, no
    reply, sent data never acknowledged): the event loops stay free
    (ping/pong, /healthz, handshakes answered), every database call fails
    within its bound (libpq's TCP user timeout, the pool's checkout wait),
    a campaign that falls due meanwhile is retried by the scheduler and
    reaches every device after healing, and no socket is lost."""
    import json

    import psycopg

    from devices.delivery.protocol import Ping, Pong
    from tests.e2e.servers import child_env
    from tests.reliability.services import (
        PacketBlackhole,
        packet_blackhole,
        private_postgres,
    )
    from tests.wsclient import DeviceClient

    reason = PacketBlackhole.unavailable()
    if reason:
        pytest.skip(reason)
    user_timeout_ms = 3000
    blackout = 15.0
    with private_redis() as redis, private_postgres() as pg:
        env = child_env(
            redis.url,
            {
                "DATABASE_URL": pg.url,
                "DB_TCP_USER_TIMEOUT_MS": str(user_timeout_ms),
                "KPNS_NODE_DEAD_AFTER_SECONDS": "60",
                "KPNS_IDLE_TIMEOUT_SECONDS": "300",
            },
        )
        manage(env, "migrate", "--noinput")
        script = MAKE_WORLD.replace("COUNT", "52").replace("DUE", "3600")
        world_data = json.loads(manage(env, "shell", "-c", script).split("WORLD", 1)[1])
        devices = [(d, t) for d, t in world_data["devices"]]
        # The test's own view of the database goes through the Unix socket,
        # which the black hole (a TCP port) does not touch.
        local = {
            "host": str(pg.directory),
            "port": pg.port,
            "user": "postgres",
            "dbname": "kpns",
        }

        def sql(query: str, *params):
            with psycopg.connect(**local, autocommit=True) as c:
                cursor = c.execute(query, params)
                return cursor.fetchall() if cursor.description else None

        child = {
            k: env[k]
            for k in (
                "DATABASE_URL",
                "DB_TCP_USER_TIMEOUT_MS",
                "KPNS_NODE_DEAD_AFTER_SECONDS",
                "KPNS_IDLE_TIMEOUT_SECONDS",
            )
        }
        with (
            daphne_servers(
                2, redis_url=redis.url, tmp_path=tmp_path, extra_env=child
            ) as servers,
            scheduler_process(redis_url=redis.url, tmp_path=tmp_path, extra_env=child),
            packet_blackhole(pg.port) as hole,
        ):
            urls = [s.ws_url for s in servers]
            fleet = await start_fleet(urls, devices[:50])
            probe = DeviceClient(urls[0], devices[50][1])
            http = httpx.AsyncClient(base_url=servers[0].http_url, timeout=30)
            try:
                await probe.connect()
                assert await until(lambda: all(s.welcomes for s in fleet), 20)
                # The campaign falls due two seconds into the blackout.
                await asyncio.to_thread(
                    sql,
                    "UPDATE campaigns_campaignslice SET next_chunk_at = "
                    "now() + interval '2 seconds' WHERE campaign_id = %s",
                    world_data["campaign"],
                )
                await asyncio.to_thread(
                    sql,
                    "UPDATE campaigns_campaign SET send_at = now() + "
                    "interval '2 seconds' WHERE id = %s",
                    world_data["campaign"],
                )
                hole.drop()
                black_at = time.monotonic()
                # The API: a problem answer within the bound, nothing written.
                started = time.monotonic()
                response = await http.get(
                    "/api/v1/device",
                    headers={"Authorization": f"Device {devices[0][1]}"},
                )
                api_seconds = time.monotonic() - started
                problem_or_fail(response)
                started = time.monotonic()
                health = await http.get("/readyz")
                health_seconds = time.monotonic() - started
                assert health.status_code == 503
                assert not health.json()["checks"]["database"]["ok"]
                assert (await http.get("/healthz")).status_code == 200
                # A new handshake: closed with "try again later", in bound.
                handshake_seconds = await refused_for_now(
                    urls[1], devices[51][1], timeout=15
                )
                # Ping/pong all through the blackout: the event loop is free
                # while threads wait on the dead connections.
                rtts = []
                while time.monotonic() < black_at + blackout:
                    started = time.monotonic()
                    await probe.send(Ping(t=1))
                    frame = await probe.receive(timeout=3)
                    assert isinstance(frame, Pong), frame
                    rtts.append(time.monotonic() - started)
                    await asyncio.sleep(0.5)
                hole.heal()
                healed_at = time.monotonic()

                healthy = await seconds_until_healthy(http, healed_at)
                assert healthy is not None, "the database did not come back"
                message_id = await first_value(
                    lambda: sql(
                        "SELECT message_id::text FROM campaigns_campaign WHERE id = %s",
                        world_data["campaign"],
                    )[0][0]
                )
                assert message_id, "the campaign did not start after healing"
                assert await until(lambda: has_all(fleet, [message_id]), 30), [
                    len(s.log.receipts) for s in fleet
                ]
                delivered_after = last_receipt(fleet, [message_id]) - healed_at
                assert all(sim.welcomes == 1 for sim in fleet), [
                    sim.log.closes for sim in fleet if sim.welcomes != 1
                ][:5]
                await asyncio.sleep(1.0)  # last acks

                def verdict_rows():
                    from tests.receipts import rows_from_sql

                    with psycopg.connect(**local) as c, c.cursor() as cur:
                        rows = rows_from_sql(cur, [d for d, _t in devices[:50]])
                        cur.execute(
                            "SELECT count(*) FROM devices_device WHERE node IS NULL"
                            " AND id = ANY(%s)",
                            [[d for d, _t in devices[:51]]],
                        )
                        offline = cur.fetchone()[0]
                    return rows, offline

                rows, offline = await asyncio.to_thread(verdict_rows)
                assert offline == 0  # presence survived the blackout
                verdict = check([s.log for s in fleet], rows, message_ids=[message_id])
                verdict.assert_ok()
                assert verdict.owed == 50
                record_figure(
                    "postgres_packets_dropped",
                    devices=51,
                    blackout_s=round(healed_at - black_at, 1),
                    tcp_user_timeout_s=user_timeout_ms / 1000,
                    api_503_s=round(api_seconds, 2),
                    healthz_503_s=round(health_seconds, 2),
                    handshake_4503_s=round(handshake_seconds, 2),
                    ping_rtt_max_s=round(max(rtts), 3),
                    healthz_ok_after_heal_s=round(healthy, 2),
                    campaign_delivered_after_heal_s=round(delivered_after, 2),
                    wire_duplicates=verdict.wire_duplicates,
                )
                assert max(rtts) < 1.0
                assert api_seconds < 10 and health_seconds < 10
                assert handshake_seconds < 15
            finally:
                await probe.close()
                await http.aclose()
                await stop_fleet(fleet)
        assert not server_tracebacks([s.output() for s in servers])


FROZEN_CLIENT = """
import asyncio, sys, websockets
async def main():
    ws = await websockets.connect(sys.argv[1],
        subprotocols=["kpns.json.v1", "kpns.token." + sys.argv[2]])
    await ws.send('{"type":"hello","last_seq":0}')
    await ws.recv()
    print("ready", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def rss_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


async def test_slow_and_frozen_consumers(settings, tmp_path):
    """(e) A consumer that reads one frame a second is closed with 4429 once
    MAX_UNACKED pushes are waiting and catches up by replay; a frozen
    (SIGSTOPped) one is found by the idle timeout and cleaned up; the
    others' latency and the server's memory do not move."""
    import subprocess
    import sys

    window = 40
    extra = {
        "KPNS_MAX_UNACKED": str(window),
        "KPNS_HEARTBEAT_SECONDS": "1",
        "KPNS_IDLE_TIMEOUT_SECONDS": "4",
    }
    with private_redis() as redis:
        use_layer(settings, redis.url)
        app, devices = await world(22)
        ids = [d for d, _t in devices]
        with daphne_servers(
            1, redis_url=redis.url, tmp_path=tmp_path, extra_env=extra
        ) as servers:
            url = servers[0].ws_url
            pid = servers[0].process.pid
            others = await start_fleet([url], devices[:20])
            slow = (await start_fleet([url], devices[20:21], read_delay=1.0))[0]
            frozen = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-c", FROZEN_CLIENT, url, devices[21][1]],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                line = await asyncio.wait_for(
                    asyncio.to_thread(frozen.stdout.readline), 10
                )
                assert line.strip() == "ready"
                assert await wait_for(lambda: online_count(ids) == 22, 10)
                frozen.send_signal(signal.SIGSTOP)
                frozen_at = time.monotonic()
                rss_before = rss_bytes(pid)
                body = "x" * 3000
                sent_at: dict[str, float] = {}

                def burst():
                    for i in range(3 * window):
                        message, _ = pushes.push_to_devices(
                            app=app,
                            device_ids=ids,
                            title=f"burst {i}",
                            body=body,
                            ttl_seconds=3600,
                        )
                        sent_at[str(message.pk)] = time.monotonic()
                    return list(sent_at)

                burst_ids = await database_sync_to_async(burst)()
                assert await until(lambda: has_all(others, burst_ids), 30)
                latencies = sorted(
                    r.at - sent_at[r.message_id]
                    for sim in others
                    for r in sim.log.app_seen
                    if r.message_id in sent_at
                )
                p99 = latencies[int(len(latencies) * 0.99) - 1]
                # The slow one was closed with 4429 ...
                # (it may see the 4429 frame, or only the connection drop
                # when the close frame sits behind unread pushes)
                assert await until(lambda: bool(slow.log.closes), 30)
                assert "too slow, closing" in servers[0].output()
                closed_slow = slow.log.closes[0]
                # ... and catches up by replay once it reads at full speed.
                slow.read_delay = 0.0
                assert await until(lambda: has_all([slow], burst_ids), 30)
                # The frozen one is found by the idle timeout and cleaned up.
                assert await wait_for(lambda: online_count([ids[21]]) == 0, 20)
                frozen_cleaned = time.monotonic() - frozen_at
                rss_after = rss_bytes(pid)
                await asyncio.sleep(0.5)
                verdict = await verdict_for(others + [slow], burst_ids)
                verdict.assert_ok()
                record_figure(
                    "slow_and_frozen",
                    window=window,
                    pushes=len(burst_ids),
                    push_bytes=len(body),
                    slow_close_code=closed_slow,
                    slow_reconnects=slow.welcomes - 1,
                    others_p99_latency_s=round(p99, 3),
                    frozen_offline_after_s=round(frozen_cleaned, 1),
                    idle_timeout_s=4,
                    server_rss_growth_mb=round((rss_after - rss_before) / 2**20, 1),
                )
                assert closed_slow in (4429, 1006)
                assert p99 < 2.0
                assert rss_after - rss_before < 64 * 2**20
            finally:
                frozen.send_signal(signal.SIGCONT)
                frozen.kill()
                frozen.wait(timeout=10)
                await stop_fleet(others + [slow])
            assert not server_tracebacks([servers[0].output()])
