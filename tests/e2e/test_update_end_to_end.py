"""Update on real server processes (Daphne, PostgreSQL, Redis): an update
is seen by every device, online and reconnecting (issue 20). Online devices
get the `update` frame; devices that had the push and come back get it on
reconnect, after what they had, in seq order; devices offline since before
the push never see the old content: they get the push once, already
rewritten, and no update frame. JSON and KMPP devices alike."""

import asyncio

import httpx
import pytest
from channels.db import database_sync_to_async

from devices.delivery import counters
from devices.delivery.protocol import JSON, KMPP, Push, Update
from devices.models import Device
from tests.e2e.inbox_apps import AppModel, connect_all, setup_world, wait_for
from tests.e2e.servers import daphne_servers
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OLD = {"title": "Sale: 50% off", "body": "Today only"}
NEW = {"title": "Sale: 15% off", "body": "Today and tomorrow"}


def codec(n: int):
    return KMPP if n % 2 else JSON


async def test_an_update_is_seen_by_online_and_reconnecting_devices(
    redis_url, tmp_path
):
    online, had, never = 4, 4, 4
    devices, key = await database_sync_to_async(setup_world)(online, had, never)
    with daphne_servers(1, redis_url=redis_url, tmp_path=tmp_path) as servers:
        server = servers[0]
        apps = [
            AppModel(DeviceClient(server.ws_url, token, codec(n)))
            for n, (_device, token) in enumerate(devices[: online + had])
        ]
        await connect_all(apps)
        await wait_for(Device.objects.filter(node__isnull=False).count, online + had)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            base_url=server.http_url, headers=headers, timeout=60
        ) as api:
            answer = await api.post("/api/v1/pushes", json={"audience": {}, **OLD})
            assert answer.status_code == 202, answer.text
            message_id = answer.json()["message_id"]
            await asyncio.gather(*(app.take(1) for app in apps))
            assert all(
                app.shown == {message_id: (OLD["title"], OLD["body"])} for app in apps
            )
            await wait_for(
                lambda: counters.message_counts(message_id)["delivered"], online + had
            )
            leaving = apps[online:]
            await asyncio.gather(*(app.client.close() for app in leaving))
            await wait_for(Device.objects.filter(node__isnull=True).count, had + never)

            answer = await api.post(f"/api/v1/messages/{message_id}/update", json=NEW)
            assert answer.status_code == 200, answer.text
            result = answer.json()
            # Only the devices that had it are sent a frame; nothing cancelled.
            assert (result["targets"], result["cancelled"]) == (online + had, 0)
            control_id = result["control_id"]
            update = Update(id=message_id, seq=2, url="", image="", data={}, **NEW)
            got = await asyncio.gather(*(app.take(1) for app in apps[:online]))
            assert got == [[update]] * online
            await wait_for(
                lambda: counters.message_counts(control_id)["delivered"], online
            )

            # Back online: the update comes after what they had, in seq order.
            for app in leaving:
                await app.client.connect(last_seq=app.seqs[-1])
                assert await app.take(1) == [update]
                assert await app.nothing_more()
            # Offline since before the push: the push once, already new.
            late = [
                AppModel(DeviceClient(server.ws_url, token, codec(n)))
                for n, (_device, token) in enumerate(devices[online + had :])
            ]
            for app in late:
                welcome = await app.client.connect()
                assert welcome.last_seq == 1  # the push, and no update after it
                (push,) = await app.take(1)
                assert isinstance(push, Push)
                assert (push.id, push.seq, push.title, push.body) == (
                    message_id,
                    1,
                    NEW["title"],
                    NEW["body"],
                )
                assert await app.nothing_more()
            for app in apps + late:
                assert app.shown == {message_id: (NEW["title"], NEW["body"])}
                assert app.seqs == sorted(set(app.seqs))
            await wait_for(
                lambda: counters.message_counts(control_id)["delivered"], online + had
            )
            await wait_for(
                lambda: counters.message_counts(message_id)["delivered"],
                online + had + never,
            )
            status = (await api.get(f"/api/v1/messages/{message_id}")).json()
            assert status["updated"] == online + had
            assert status["recalled"] == 0
            assert status["title"] == NEW["title"]
            for app in apps + late:
                await app.client.close()
