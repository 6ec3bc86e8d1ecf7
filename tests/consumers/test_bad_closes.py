"""The server records when it gives up on a device's socket (4429: too
slow; 4400: protocol errors) in Device.bad_close_at, which canary waves
judge (campaigns.canary); other closes leave it alone."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from devices.delivery.protocol import Hello, Ping, Welcome
from devices.models import Device
from tests.reliability.test_flow_control import (
    open_socket,
    push_many,
    receive,
    send,
    setup,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("stop_nodes"),
]


async def bad_close_at(device):
    for _ in range(100):
        found = await database_sync_to_async(
            Device.objects.values_list("bad_close_at", flat=True).get
        )(pk=device.pk)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    return None


async def closed_with(communicator):
    while True:
        frame = await receive(communicator)
        if isinstance(frame, dict):
            await communicator.disconnect()
            return frame["code"]


async def test_a_socket_too_far_behind_is_recorded_with_its_4429(settings):
    settings.KPNS = {**settings.KPNS, "MAX_UNACKED": 3}
    app, [(device, token)] = await setup()
    communicator = await open_socket(token)
    await send(communicator, Hello(last_seq=0))
    assert isinstance(await receive(communicator), Welcome)
    await database_sync_to_async(push_many)(app, device, 6)
    assert await closed_with(communicator) == 4429
    assert await bad_close_at(device) is not None
    row = await database_sync_to_async(Device.objects.get)(pk=device.pk)
    assert row.node is None  # presence cleared in the same batch


async def test_a_flood_before_hello_is_recorded_with_its_4400(settings):
    settings.KPNS = {
        **settings.KPNS,
        "MAX_FRAMES_PER_SECOND": 10,
        "FRAME_BURST": 10,
        "RATE_LIMIT_CLOSE_AFTER": 20,
    }
    _app, [(device, token)] = await setup()
    communicator = await open_socket(token)
    for t in range(40):
        await send(communicator, Ping(t=t))
    assert await closed_with(communicator) == 4400
    assert await bad_close_at(device) is not None


async def test_a_device_that_leaves_on_its_own_is_not_recorded():
    _app, [(device, token)] = await setup()
    communicator = await open_socket(token)
    await send(communicator, Hello(last_seq=0))
    assert isinstance(await receive(communicator), Welcome)
    await communicator.disconnect()
    for _ in range(100):
        row = await database_sync_to_async(Device.objects.get)(pk=device.pk)
        if row.node is None:
            break
        await asyncio.sleep(0.05)
    assert row.node is None and row.bad_close_at is None
