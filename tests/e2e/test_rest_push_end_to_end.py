"""A backend pushes through the REST API of a real Daphne (the embedded
shape, where one Daphne serves everything): the request is written by the
one write path (devices.delivery.enqueue.deliveries_write) and reaches
the device's socket; errors, idempotent retries and key revocation behave
as they do through Django's own handler."""

import asyncio

import httpx
import pytest
from channels.db import database_sync_to_async

from devices.integrations import apikeys
from devices.models import Delivery, Device, Message
from tests.e2e.servers import daphne_servers
from tests.factories import make_api_key, make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CACHE_SECONDS = 0.5


def setup_world():
    app = make_app(name="Shop")
    devices = [make_device(app, platform="android") for _ in range(2)]
    api_key, key = make_api_key(app, scopes=["push:send", "devices:read"])
    return devices, api_key, key


async def wait_online(count: int) -> None:
    for _ in range(100):
        online = await database_sync_to_async(
            Device.objects.filter(node__isnull=False).count
        )()
        if online == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} devices never came online")


async def test_rest_pushes_reach_sockets_in_order_and_errors_stay_clear(
    redis_url, tmp_path
):
    devices, api_key, key = await database_sync_to_async(setup_world)()
    (first, first_token), (second, second_token) = devices
    env = {"KPNS_API_KEY_CACHE_SECONDS": str(CACHE_SECONDS)}
    with daphne_servers(
        1, redis_url=redis_url, tmp_path=tmp_path, extra_env=env
    ) as servers:
        server = servers[0]
        clients = [
            DeviceClient(server.ws_url, first_token),
            DeviceClient(server.ws_url, second_token),
        ]
        for client in clients:
            await client.connect()
        await wait_online(2)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            base_url=server.http_url, headers=headers, timeout=10
        ) as api:

            async def push(title: str, *ids: object, **extra: object):
                body = {"device_ids": [str(i) for i in ids], "title": title, **extra}
                return await api.post("/api/v1/pushes", json=body)

            answer = await push("one", first.pk)
            assert answer.status_code == 202, answer.text
            assert answer.json()["targets"] == 1
            got = await clients[0].receive_push()
            assert (got.title, got.seq, got.id) == (
                "one",
                1,
                answer.json()["message_id"],
            )

            # Concurrent pushes to both devices: each gets every one, at
            # consecutive seqs, in the order they were committed.
            answers = await asyncio.gather(
                *(push(f"burst {n}", first.pk, second.pk) for n in range(20))
            )
            assert {a.status_code for a in answers} == {202}
            assert {a.json()["targets"] for a in answers} == {2}
            for client, start in zip(clients, (2, 1), strict=True):
                seqs = [(await client.receive_push()).seq for _ in range(20)]
                assert seqs == list(range(start, start + 20))
            stored = await database_sync_to_async(
                lambda: sorted(
                    Delivery.objects.filter(device=second).values_list("seq", flat=True)
                )
            )()
            assert stored == list(range(1, 21))

            # A collapse key and an Idempotency-Key take the transactional
            # path; the client sees no difference.
            collapsed = await push("c", first.pk, collapse_key="score")
            assert collapsed.status_code == 202
            assert (await clients[0].receive_push()).seq == 22
            retry = {"Idempotency-Key": "order-1"}
            body = {"device_ids": [str(first.pk)], "title": "once"}
            once = await api.post("/api/v1/pushes", json=body, headers=retry)
            again = await api.post("/api/v1/pushes", json=body, headers=retry)
            assert once.status_code == again.status_code == 202
            assert again.headers.get("Idempotent-Replayed") == "true"
            assert once.json() == again.json()
            assert (await clients[0].receive_push()).title == "once"
            titles = await database_sync_to_async(
                lambda: Message.objects.filter(title="once").count()
            )()
            assert titles == 1

            # Bad input: problem JSON, nothing written.
            bad = await push("", first.pk)
            assert bad.status_code == 400
            assert bad.headers["Content-Type"] == "application/problem+json"
            assert set(bad.json()["errors"]) >= {"title"}
            nul = await push("x", first.pk, data={"k": "a\x00b"})
            assert nul.status_code == 400 and "data" in nul.json()["errors"]
            unknown = await push("x", "8e0c3e9e-0000-4000-8000-000000000000")
            assert unknown.status_code == 202 and unknown.json()["targets"] == 0
            wrong = await api.post(
                "/api/v1/pushes",
                json={"device_ids": [str(first.pk)], "title": "x"},
                headers={"Authorization": "Bearer kpns_sk_not-a-key"},
            )
            assert wrong.status_code == 401

            # Revoked by another process (this one): the server's cached
            # copy lasts at most KPNS_API_KEY_CACHE_SECONDS.
            await database_sync_to_async(apikeys.api_key_revoke)(api_key=api_key)
            await asyncio.sleep(CACHE_SECONDS + 0.3)
            revoked = await push("late", first.pk)
            assert revoked.status_code == 401
            with pytest.raises(asyncio.TimeoutError):
                await clients[0].receive_push(timeout=0.5)
        for client in clients:
            await client.close()
    assert "Traceback" not in server.output()
