"""SDK clients survive a server restart and a Redis restart: every client is
back within 30 s and receives a campaign sent during the outage exactly once.

The Redis is this test's own (tests/reliability/services.py), never the
shared one on 6379.
"""

import asyncio
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager

import pytest
from channels.db import database_sync_to_async

from campaigns import lifecycle, sender
from kpns_sdk import Client, MemoryStore
from tests.e2e.servers import (
    ROOT,
    ServerProcess,
    child_env,
    free_port,
    scheduler_process,
    stop_process,
    wait_for_port,
)
from tests.factories import make_app
from tests.reliability.services import private_redis

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENTS = 4
BACK_WITHIN = 30.0
TAG = "reconnect"


@pytest.fixture
def own_redis(settings):
    if shutil.which("redis-server") is None:
        pytest.skip("the reconnect tests start their own redis-server: not on PATH")
    with private_redis() as redis:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [
                        {
                            "address": redis.url,
                            "socket_timeout": 2,
                            "socket_connect_timeout": 1,
                        }
                    ]
                },
            }
        }
        yield redis


@contextmanager
def daphne(port, redis_url, log):
    """One Daphne on a fixed port, so clients reconnect to the same URL."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "kpns_serve", "--port", str(port)],
        cwd=ROOT,
        env=child_env(redis_url),
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process, log)
        yield ServerProcess(port, process, log)
    finally:
        stop_process(process)


async def connect_clients(app, url):
    received = [Counter() for _ in range(CLIENTS)]
    clients = []
    for index in range(CLIENTS):
        client = Client(
            url,
            app.client_key,
            store=MemoryStore(),
            encoding="kmpp" if index % 2 else "json",
            device={"tags": [TAG]},
            on_push=lambda push, seen=received[index]: seen.update([push.id]),
        )
        client.start()
        clients.append(client)
    await wait_all(clients, "connected", 15)
    return clients, received


async def wait_all(clients, state, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.state == state for client in clients):
            return time.monotonic()
        await asyncio.sleep(0.05)
    states = [client.state for client in clients]
    raise AssertionError(f"not all {state} within {timeout} s: {states}")


def send_campaign(app, name):
    campaign = lifecycle.campaign_create(
        app=app,
        name=name,
        title=name,
        audience_kind="filter",
        audience={"tags_any": [TAG]},
    )
    campaign = sender.campaign_send_now(campaign=campaign)
    # The scheduler may hold the first chunk (SKIP LOCKED): its message
    # exists once that chunk commits.
    for _ in range(200):
        campaign.refresh_from_db()
        if campaign.message_id is not None:
            return str(campaign.message_id)
        time.sleep(0.05)
    raise AssertionError(f"campaign {name!r} has no message after 10 s")


async def assert_once_each(received, message_id, timeout=BACK_WITHIN):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(seen[message_id] >= 1 for seen in received):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # a duplicate would arrive now
    counts = [seen[message_id] for seen in received]
    assert counts == [1] * CLIENTS, f"message {message_id} per client: {counts}"


async def test_clients_come_back_after_a_server_restart(own_redis, tmp_path):
    app = await database_sync_to_async(make_app)()
    port = free_port()
    log = tmp_path / "daphne.log"
    with scheduler_process(redis_url=own_redis.url, tmp_path=tmp_path):
        with daphne(port, own_redis.url, log) as server:
            clients, received = await connect_clients(app, server.http_url)
            before = await database_sync_to_async(send_campaign)(app, "before")
            await assert_once_each(received, before, timeout=10)
        # The server is gone: every client notices and backs off.
        await wait_all_not_connected(clients)
        during = await database_sync_to_async(send_campaign)(app, "during outage")
        await asyncio.sleep(1.0)
        restarted = time.monotonic()
        with daphne(port, own_redis.url, log):
            try:
                back = await wait_all(clients, "connected", BACK_WITHIN)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{log.read_text()[-4000:]}") from None
            assert back - restarted < BACK_WITHIN
            print(f"all clients back {back - restarted:.1f} s after the restart")
            await assert_once_each(received, during)
            assert all(seen[before] == 1 for seen in received)
            for client in clients:
                await client.stop()


async def wait_all_not_connected(clients, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.state != "connected" for client in clients):
            return
        await asyncio.sleep(0.05)
    raise AssertionError([client.state for client in clients])


async def test_clients_get_a_campaign_sent_while_redis_was_down(own_redis, tmp_path):
    app = await database_sync_to_async(make_app)()
    port = free_port()
    log = tmp_path / "daphne.log"
    with (
        scheduler_process(redis_url=own_redis.url, tmp_path=tmp_path),
        daphne(port, own_redis.url, log),
    ):
        clients, received = await connect_clients(app, f"http://127.0.0.1:{port}")
        own_redis.kill()
        during = await database_sync_to_async(send_campaign)(app, "redis down")
        await asyncio.sleep(1.0)
        own_redis.start()
        restarted = time.monotonic()
        try:
            back = await wait_all(clients, "connected", BACK_WITHIN)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-4000:]}") from None
        assert back - restarted < BACK_WITHIN
        print(f"all clients connected {back - restarted:.1f} s after Redis restart")
        await assert_once_each(received, during)
        # And the layer works again: a campaign now arrives too.
        after = await database_sync_to_async(send_campaign)(app, "redis back")
        await assert_once_each(received, after, timeout=10)
        for client in clients:
            await client.stop()
