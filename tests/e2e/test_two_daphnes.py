"""Two real Daphne processes on Redis: a push made on one side reaches a
device connected to the other, and its ack is recorded."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from devices.delivery import pushes
from devices.models import Delivery, DeliveryStatus, Device
from tests.e2e.admin_client import AdminClient
from tests.e2e.servers import daphne_servers
from tests.factories import make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_layer(settings, redis_url):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 10}]},
        }
    }


@pytest.fixture
def servers(redis_url, tmp_path):
    with daphne_servers(2, redis_url=redis_url, tmp_path=tmp_path) as running:
        yield running


async def wait_until(check, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if await database_sync_to_async(check)():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_push_from_this_process_reaches_a_device_on_a_daphne(
    servers, redis_layer
):
    app = await database_sync_to_async(make_app)()
    device, token = await database_sync_to_async(make_device)(app)
    client = DeviceClient(servers[0].ws_url, token)
    await client.connect()
    assert await wait_until(lambda: Device.objects.get(pk=device.pk).online)

    message, count = await database_sync_to_async(pushes.push_to_devices)(
        app=app, device_ids=[device.pk], title="Across processes"
    )
    assert count == 1
    push = await client.receive_push(timeout=5)
    assert (push.id, push.title, push.seq) == (str(message.pk), "Across processes", 1)
    await client.ack(push)
    assert await wait_until(
        lambda: Delivery.objects.get(message=message).status == DeliveryStatus.DELIVERED
    )
    await client.close()


async def test_admin_test_push_on_one_daphne_reaches_device_on_the_other(servers):
    app = await database_sync_to_async(make_app)()
    device, token = await database_sync_to_async(make_device)(app, alias="user-1")
    await database_sync_to_async(get_user_model().objects.create_superuser)(
        "boss", "", "pw-boss-123"
    )
    client = DeviceClient(servers[0].ws_url, token)
    await client.connect()
    assert await wait_until(lambda: Device.objects.get(pk=device.pk).online)

    admin = AdminClient(servers[1].http_url)

    def send_from_admin():
        admin.login("boss", "pw-boss-123")
        response = admin.action(
            "/admin/devices/device/",
            "send_test_push",
            [device.pk],
            apply="1",
            title="Hello from the admin",
            body="via the other Daphne",
        )
        assert response.status_code == 200
        assert "Test push queued for 1 device" in response.text

    await asyncio.to_thread(send_from_admin)
    push = await client.receive_push(timeout=5)
    assert push.title == "Hello from the admin"
    await client.ack(push)
    assert await wait_until(
        lambda: (
            Delivery.objects.get(device=device, seq=push.seq).status
            == DeliveryStatus.DELIVERED
        )
    )
    page = await asyncio.to_thread(
        admin.get, f"/admin/devices/device/{device.pk}/change/"
    )
    assert "user-1" in page.text
    admin.close()
    await client.close()


async def test_revoking_in_the_admin_closes_the_live_socket_with_4403(servers):
    app = await database_sync_to_async(make_app)()
    device, token = await database_sync_to_async(make_device)(app)
    await database_sync_to_async(get_user_model().objects.create_superuser)(
        "boss", "", "pw-boss-123"
    )
    client = DeviceClient(servers[0].ws_url, token)
    await client.connect()
    assert await wait_until(lambda: Device.objects.get(pk=device.pk).online)
    admin = AdminClient(servers[1].http_url)

    def revoke():
        admin.login("boss", "pw-boss-123")
        # post=yes: the answer of the revoke confirmation page.
        admin.action("/admin/devices/device/", "revoke", [device.pk], post="yes")

    await asyncio.to_thread(revoke)
    with pytest.raises(Exception) as closed:
        await client.receive(timeout=10)
    assert getattr(closed.value, "rcvd", None) is not None
    assert closed.value.rcvd.code == 4403
    admin.close()
