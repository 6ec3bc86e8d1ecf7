"""The Python SDK's report_event against a real Daphne: an app event about a
received push is recorded once per device, message and name, and the
server's refusals (a bad name, a push never sent) reach the app as ApiError."""

import asyncio
import uuid

import httpx
import pytest
from channels.db import database_sync_to_async

from devices.delivery.pushes import push_to_devices
from devices.models import MessageEvent
from kpns_sdk import ApiError, Client, MemoryStore
from tests.factories import make_app
from tests.sdk.test_python_sdk import wait_for


def recorded_events(message_id):
    rows = MessageEvent.objects.filter(message_id=message_id)
    return sorted(rows.values_list("device_id", "name"))


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_the_sdk_reports_an_event_about_a_push_once(sdk_server, redis_layer):
    app = await database_sync_to_async(make_app)()
    received = []
    client = Client(
        sdk_server.http_url,
        app.client_key,
        store=MemoryStore(),
        device={"platform": "other"},
        on_push=received.append,
    )
    async with client:
        await wait_for(lambda: client.state == "connected", what="connected")
        message, _ = await database_sync_to_async(push_to_devices)(
            app=app, device_ids=[client.device_id], title="New release"
        )
        await wait_for(lambda: received, what="the push")
        push = received[0]

        assert await client.report_event(push.id, "crash") is True
        assert await client.report_event(push.id, "crash") is False  # counted once
        assert await client.report_event(push.id, "uninstall") is True

        events = await database_sync_to_async(recorded_events)(message.pk)
        device = uuid.UUID(client.device_id)
        assert events == [(device, "crash"), (device, "uninstall")]

        with pytest.raises(ApiError) as bad_name:
            await client.report_event(push.id, "Crash!")
        assert bad_name.value.status == 400
        assert "name: Lowercase letters" in str(bad_name.value)

        with pytest.raises(ApiError) as unknown:
            await client.report_event(str(uuid.uuid4()), "crash")
        assert unknown.value.status == 404
        assert str(unknown.value) == "HTTP 404: No such push for this device."

        assert await database_sync_to_async(recorded_events)(message.pk) == events


async def test_report_event_gives_up_after_its_timeout():
    """A server that accepts the connection and never answers."""
    held = []
    silent = await asyncio.start_server(
        lambda reader, writer: held.append(writer), "127.0.0.1", 0
    )
    url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    store = MemoryStore()
    store.save({"server": url, "client_key": "ck_test", "device_id": "d", "token": "t"})
    client = Client(url, "ck_test", store=store, http_timeout=0.2)
    try:
        with pytest.raises(httpx.TimeoutException):
            await client.report_event(str(uuid.uuid4()), "crash")
        assert held, "the request reached the silent server"
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
