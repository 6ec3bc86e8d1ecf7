"""The Python SDK's on_recall and on_update against a real Daphne: given in
seq order after the push, acked after the handler, counted in the stats."""

import pytest
from channels.db import database_sync_to_async

from devices.delivery import counters, recall
from devices.delivery.pushes import push_to_devices
from devices.models import Message
from kpns_sdk import Client, MemoryStore
from kpns_sdk.protocol import Recall, Update
from tests.factories import make_app
from tests.sdk.test_python_sdk import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("encoding", ["json", "kmpp"])
async def test_the_sdk_applies_an_update_then_a_recall_and_acks_both(
    sdk_server, redis_layer, encoding
):
    app = await database_sync_to_async(make_app)()
    shown: dict[str, str] = {}
    seen: list[object] = []

    def on_push(push):
        seen.append(push)
        shown[push.id] = push.title

    def on_update(update):
        seen.append(update)
        shown[update.id] = update.title

    async def on_recall(frame):
        seen.append(frame)
        shown.pop(frame.id, None)

    client = Client(
        sdk_server.http_url,
        app.client_key,
        store=MemoryStore(),
        encoding=encoding,
        device={"platform": "other"},
        on_push=on_push,
        on_update=on_update,
        on_recall=on_recall,
    )
    async with client:
        await wait_for(lambda: client.state == "connected", what="connected")
        message, _ = await database_sync_to_async(push_to_devices)(
            app=app, device_ids=[client.device_id], title="Sale 10%"
        )
        await wait_for(lambda: shown, what="the push")
        delivered = database_sync_to_async(counters.message_counts)

        async def push_acked():
            return (await delivered(message.pk))["delivered"] == 1

        await wait_for(push_acked, what="the push's ack")
        await database_sync_to_async(recall.message_update)(
            message=message, changes={"title": "Sale 20%"}
        )
        await wait_for(lambda: shown.get(str(message.pk)) == "Sale 20%", what="update")
        await database_sync_to_async(recall.message_recall)(message=message)
        await wait_for(lambda: not shown, what="the recall")
        assert [type(f).__name__ for f in seen] == ["Push", "Update", "Recall"]
        assert isinstance(seen[1], Update) and isinstance(seen[2], Recall)
        assert [f.seq for f in seen] == [1, 2, 3]

        control_counts = database_sync_to_async(recall.control_counts)

        async def acked():
            return await control_counts(message.pk) == {"recalled": 1, "updated": 1}

        await wait_for(acked, what="the acks")
        assert client.stats.controls == 2 and client.last_seq == 3
        assert await database_sync_to_async(Message.objects.count)() == 3
