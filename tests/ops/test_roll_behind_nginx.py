"""The production shape behind the real nginx through a roll and a crash
(issue 21 item 1): gunicorn serves the API, two Daphne processes hold the
device sockets, a scheduler runs, nginx routes /ws/ to the Daphnes and the
rest to gunicorn (deploy/nginx/kpns.conf). Devices register through the
API and connect over wss through nginx; an integrator posts a push every
50 ms with an Idempotency-Key. Each Daphne is drained (SIGTERM) and
restarted in turn; within 60 s of the roll the rebalancer has spread the
devices again (no process holds more than 60% of them, by presence in the
database); gunicorn's workers are replaced (new ones first), then one Daphne is
SIGKILLed and restarted: nginx answers no 5xx to any API call or
handshake, and the receipt checker finds nothing lost and nothing twice.

KPNS_ROLL_DEVICES sets the fleet (500 by default, the full size: about
30 s on this 2-core machine)."""

import asyncio
import json
import os
import signal
import time
import uuid

import httpx
import pytest
from channels.db import database_sync_to_async

from devices.models import Device
from tests.devicesim import start_fleet, stop_fleet
from tests.e2e.servers import free_port
from tests.factories import make_api_key, make_app
from tests.ops.procs import (
    client_tls,
    nginx_in_front,
    start_http,
    start_scheduler,
    start_server,
    stopping,
    wait_port_free,
)
from tests.receipts import check, rows_from_orm
from tests.reliability.conftest import record_figure

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    # 500 devices: registration, two drains, 60 s for the rebalance at most.
    pytest.mark.timeout(420),
]

DEVICES = int(os.environ.get("KPNS_ROLL_DEVICES", "500"))
PUSH_EVERY = 0.05  # seconds between an integrator's pushes
TARGETS_PER_PUSH = 10
ENV = {
    "LOG_FORMAT": "json",
    "KPNS_DRAIN_SECONDS": "10",
    # Every device registers from 127.0.0.1, through one nginx.
    "KPNS_REGISTER_ADDRESS_RATE_PER_MINUTE": "100000",
    "KPNS_REGISTER_RATE_PER_MINUTE": "100000",
    # The rebalancer on, at its default rate (docs/operations.md).
    "KPNS_REBALANCE_PER_SECOND": "50",
}
# After a roll every device sits on the process restarted first; issue 21:
# within this long no process may hold more than BALANCED of them.
BALANCE_WITHIN = 60.0
BALANCED = 0.6


def world():
    app = make_app(name="Roll")
    _key, secret = make_api_key(app, scopes=["push:send"])
    return app, secret


async def register(http, client_key, count):
    """Devices as the SDKs register them: POST /api/v1/devices/register."""
    slots = asyncio.Semaphore(8)

    async def one():
        async with slots:
            answer = await http.post(
                "/api/v1/devices/register",
                json={"client_key": client_key, "platform": "android"},
            )
            assert answer.status_code == 201, answer.text
            body = answer.json()
            return body["id"], body["token"]

    return await asyncio.gather(*(one() for _ in range(count)))


class Integrator:
    """A backend pushing every PUSH_EVERY seconds through nginx; each push
    is retried with its Idempotency-Key until it is answered 202."""

    def __init__(self, http, key, device_ids):
        self.http = http
        self.key = key
        self.device_ids = device_ids
        self.accepted: dict[str, str] = {}  # Idempotency-Key -> message id
        self.answers: list[int] = []  # every status, retries included
        self.failures: list[str] = []  # transport errors (no answer)
        # Connects that found no TLS session within the client's timeout:
        # nothing was sent, so the retry is as safe as a first try. On the
        # 2-core machine at load 16 one connect (TLS handshake included)
        # took over 10 s while 500 devices reconnected through the same
        # nginx; a few are tolerated, an error after the request is not.
        self.connect_timeouts = 0
        self.stop = asyncio.Event()

    async def push(self, index):
        key = f"roll-{uuid.uuid4()}"
        start = index * TARGETS_PER_PUSH % len(self.device_ids)
        targets = (self.device_ids * 2)[start : start + TARGETS_PER_PUSH]
        body = {"device_ids": targets, "title": f"roll {index}", "ttl_seconds": 3600}
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": key}
        for _attempt in range(50):
            try:
                answer = await self.http.post(
                    "/api/v1/pushes", json=body, headers=headers
                )
            except httpx.ConnectTimeout:
                self.connect_timeouts += 1
                await asyncio.sleep(0.2)
                continue
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
                await asyncio.sleep(0.2)
                continue
            self.answers.append(answer.status_code)
            if answer.status_code == 202:
                message_id = answer.json()["message_id"]
                # A retry of the same key answers the same message.
                assert self.accepted.setdefault(key, message_id) == message_id
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"push {index} never accepted: {self.answers[-5:]}")

    async def run(self):
        sends = []
        index = 0
        while not self.stop.is_set():
            sends.append(asyncio.ensure_future(self.push(index)))
            index += 1
            await asyncio.sleep(PUSH_EVERY)
        await asyncio.gather(*sends)


def shares(device_ids) -> dict[str, int]:
    """Online devices per node (presence: Device.node)."""
    nodes = Device.objects.filter(pk__in=device_ids, node__isnull=False)
    counts: dict[str, int] = {}
    for node in nodes.values_list("node", flat=True):
        counts[node] = counts.get(node, 0) + 1
    return counts


async def wait_balanced(device_ids, timeout):
    """Seconds until every device is online and no node holds more than
    BALANCED of them, or None; with the shares last seen."""
    started = time.monotonic()
    found: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        found = await database_sync_to_async(shares)(device_ids)
        total = sum(found.values())
        if total == len(device_ids) and max(found.values()) <= BALANCED * total:
            return round(time.monotonic() - started, 1), found
        await asyncio.sleep(0.25)
    return None, found


def nginx_5xx(access_log):
    lines = [json.loads(line) for line in access_log.splitlines() if line]
    return [line for line in lines if line["status"] >= 500], lines


async def ready(url, tls=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(verify=tls or False, timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready")


async def test_roll_and_crash_behind_nginx_answer_no_5xx_and_lose_nothing(
    redis_url, tmp_path, monkeypatch
):
    http_port, ports = free_port(), [free_port(), free_port()]
    procs = []
    with stopping(procs):
        gunicorn = start_http(
            http_port, redis_url=redis_url, tmp_path=tmp_path, extra_env=ENV
        )
        procs.append(gunicorn)
        servers = [
            start_server(port, redis_url=redis_url, tmp_path=tmp_path, extra_env=ENV)
            for port in ports
        ]
        procs += servers
        procs.append(start_scheduler(redis_url=redis_url, tmp_path=tmp_path))
        with nginx_in_front(ports, tmp_path, http_ports=[http_port]) as proxy:
            cert = proxy.prefix / "cert.pem"
            tls = client_tls(cert)
            # The simulated devices use the default TLS context: trust the
            # test's certificate there too.
            monkeypatch.setenv("SSL_CERT_FILE", str(cert))
            app, secret = await database_sync_to_async(world)()
            async with httpx.AsyncClient(
                base_url=proxy.https_url, verify=tls, timeout=10
            ) as http:
                devices = await register(http, app.client_key, DEVICES)
                fleet = await start_fleet([proxy.ws_url], devices, timeout=90)
                try:
                    ids = [device_id for device_id, _ in devices]
                    integrator = Integrator(http, secret, ids)
                    pushing = asyncio.ensure_future(integrator.run())
                    await asyncio.sleep(2)

                    # The roll: each Daphne drains, exits 0, comes back.
                    for index, port in enumerate(ports):
                        old = servers[index]
                        old.signal(signal.SIGTERM)
                        assert await asyncio.to_thread(old.wait, 30) == 0
                        await asyncio.to_thread(wait_port_free, port)
                        servers[index] = await asyncio.to_thread(
                            start_server,
                            port,
                            redis_url=redis_url,
                            tmp_path=tmp_path,
                            extra_env=ENV,
                            tag=f"-rolled{index}",
                        )
                        procs.append(servers[index])
                        await ready(servers[index].http_url)
                        await asyncio.sleep(1)
                    # The devices sit on the process restarted first; the
                    # rebalancer spreads them again.
                    after_roll = await database_sync_to_async(shares)(ids)
                    balanced_s, balance = await wait_balanced(ids, BALANCE_WITHIN)
                    assert balanced_s is not None, (after_roll, balance)
                    # gunicorn: new workers load the code, then the old
                    # ones finish (as deploy/kpnsctl roll does).
                    workers = set(gunicorn.workers())
                    await asyncio.to_thread(gunicorn.reload_workers)
                    for _ in range(100):
                        now = set(gunicorn.workers())
                        if len(now) == len(workers) and not now & workers:
                            break
                        await asyncio.sleep(0.1)
                    assert not set(gunicorn.workers()) & workers
                    await asyncio.sleep(1)

                    # A crash: SIGKILL, then supervisord's restart.
                    victim = servers[0]
                    victim.signal(signal.SIGKILL)
                    await asyncio.to_thread(victim.wait, 10)
                    await asyncio.sleep(1)
                    servers[0] = await asyncio.to_thread(
                        start_server,
                        ports[0],
                        redis_url=redis_url,
                        tmp_path=tmp_path,
                        extra_env=ENV,
                        tag="-crashed",
                    )
                    procs.append(servers[0])
                    await ready(servers[0].http_url)
                    await asyncio.sleep(2)
                    integrator.stop.set()
                    await asyncio.wait_for(pushing, 60)

                    accepted = set(integrator.accepted.values())
                    owed = {mid for mid in accepted}

                    def delivered_everywhere():
                        rows = rows_from_orm(ids)
                        verdict = check(
                            [sim.log for sim in fleet], rows, message_ids=owed
                        )
                        return verdict if not verdict.lost else None

                    verdict = None
                    for _ in range(300):
                        verdict = await database_sync_to_async(delivered_everywhere)()
                        if verdict is not None:
                            break
                        await asyncio.sleep(0.1)
                    if verdict is None:
                        verdict = await database_sync_to_async(
                            lambda: check(
                                [sim.log for sim in fleet],
                                rows_from_orm(ids),
                                message_ids=owed,
                            )
                        )()
                finally:
                    await stop_fleet(fleet)

            online = await database_sync_to_async(
                lambda: Device.objects.filter(pk__in=ids).count()
            )()
            assert online == DEVICES
            errors, lines = nginx_5xx(proxy.access_log())
            handshakes = [line for line in lines if line["path"].startswith("/ws/")]
            pushes = [line for line in lines if line["path"] == "/api/v1/pushes"]

        assert not errors, (errors[:5], proxy.error_log()[-3000:])
        assert all(status < 500 for status in integrator.answers)
        assert not integrator.failures, integrator.failures[:5]
        assert integrator.connect_timeouts <= 5, integrator.connect_timeouts
        verdict.assert_ok()
        assert len(accepted) >= 100, len(accepted)
        # Devices moved: every one reconnected at least once (drains, kill).
        assert len(handshakes) >= 2 * DEVICES, len(handshakes)
        record_figure(
            "roll_behind_nginx",
            devices=DEVICES,
            pushes=len(accepted),
            api_calls=len(pushes),
            handshakes=len(handshakes),
            nginx_5xx=len(errors),
            api_connect_timeouts=integrator.connect_timeouts,
            lost=sum(len(v) for v in verdict.lost.values()),
            duplicated=sum(len(v) for v in verdict.duplicated.values()),
            wire_duplicates=verdict.wire_duplicates,
            owed=verdict.owed,
            largest_share_after_roll=max(after_roll.values(), default=0),
            balanced_after_s=balanced_s,
            shares_when_balanced=sorted(balance.values()),
        )
