"""A closed connection is freed by reference counting, not left in cycles.

The server runs full garbage collections rarely (devices.server.gcpause); before
devices.cycles, every closed connection left about 55 objects in reference
cycles inside Daphne, Twisted and autobahn, so reconnect churn grew a
process by ~15 KB per connection until a multi-second full collection.
A real kpns_serve counts, on demand, what only a full collection can free.
"""

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest
from channels.db import database_sync_to_async

from devices.delivery.protocol import Ping, Pong
from tests.e2e.servers import ROOT, child_env, free_port, stop_process, wait_for_port
from tests.factories import make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CONNECTIONS = 200


def make_devices(count):
    app = make_app()
    return [make_device(app)[1] for _ in range(count)]


async def churn(url: str, tokens: list[str]) -> None:
    """Connect every token, then close half cleanly and abort the others."""
    clients = [DeviceClient(url, token) for token in tokens]
    await asyncio.gather(*(client.connect() for client in clients))
    for index, client in enumerate(clients):
        if index % 2:
            client.ws.transport.abort()
        else:
            await client.close()


async def garbage_after(process, report, timeout: float = 20.0) -> dict:
    report.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not report.exists():
        assert time.monotonic() < deadline, "the probe did not report"
        await asyncio.sleep(0.1)
    return json.loads(report.read_text())


class Probe:
    """A kpns_serve with the garbage probe (tests/e2e/garbage_probe.py)."""

    def __init__(self, redis_url: str, tmp_path) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws/v1/device/"
        self.report = tmp_path / "garbage.json"
        self.log = tmp_path / "probe.log"
        self.env = child_env(redis_url, {"KPNS_GARBAGE_REPORT": str(self.report)})

    def __enter__(self) -> "Probe":
        self.process = subprocess.Popen(
            [sys.executable, "tests/e2e/garbage_probe.py", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, self.process, self.log)
        except BaseException:
            stop_process(self.process, timeout=15)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process, timeout=15)

    async def found(self) -> dict:
        return await garbage_after(self.process, self.report)


async def test_closed_connections_leave_no_cyclic_garbage(redis_url, tmp_path):
    tokens = await database_sync_to_async(make_devices)(CONNECTIONS)
    with Probe(redis_url, tmp_path) as probe:
        await churn(probe.url, tokens[:20])  # warm-up: first-use imports and caches
        await asyncio.sleep(2.5)  # Daphne forgets finished connections each second
        await probe.found()
        await churn(probe.url, tokens)
        # Daphne forgets a finished connection within a second; the timeout
        # check (every 2 s) then drops it from the sockets still opening.
        await asyncio.sleep(4.5)
        found = await probe.found()
        # Before devices.cycles: ~11,000 objects for 200 connections.
        assert found["garbage"] < CONNECTIONS, found
        # Every finished connection forgotten, though Daphne's checks now
        # visit only the connections that changed (devices.checkers).
        assert found["connections"] == [0], found
        assert found["settling"] == found["opening"] == [0], found


async def test_open_sockets_need_no_periodic_visits(redis_url, tmp_path):
    """Open sockets stay served and tracked, yet none is due a timeout or
    application check; once closed, each is forgotten."""
    tokens = await database_sync_to_async(make_devices)(20)
    with Probe(redis_url, tmp_path) as probe:
        clients = [DeviceClient(probe.url, token) for token in tokens]
        await asyncio.gather(*(client.connect() for client in clients))
        await asyncio.sleep(2.5)  # past a timeout check and two application checks
        found = await probe.found()
        assert found["connections"] == [len(clients)], found
        assert found["settling"] == found["opening"] == [0], found
        for client in clients:  # still served
            await client.send(Ping(t=7))
            assert await client.receive() == Pong(t=7)
        for client in clients:
            await client.close()
        await asyncio.sleep(2.5)
        found = await probe.found()
        assert found["connections"] == [0], found
