"""A marketer drives the real admin over HTTP; devices on two real Daphne
processes receive the campaign, ack it, and the stats show it."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import connection

from campaigns.models import Campaign
from campaigns.roles import marketer_group
from campaigns.selectors import campaign_stats
from devices.delivery.protocol import KMPP, Opened
from devices.models import Device
from tests.e2e.admin_client import AdminClient
from tests.e2e.servers import daphne_servers, scheduler_process
from tests.factories import make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def setup_world():
    app = make_app(name="Shop")
    vip = [make_device(app, tags=["vip"], platform="android")[1] for _ in range(3)]
    other = [make_device(app, tags=["basic"], platform="android")[1] for _ in range(2)]
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(marketer_group())
    return app, vip, other


async def test_marketer_sends_a_tagged_campaign_to_devices_on_two_daphnes(
    redis_url, tmp_path
):
    app, vip_tokens, other_tokens = await database_sync_to_async(setup_world)()
    with (
        daphne_servers(2, redis_url=redis_url, tmp_path=tmp_path) as servers,
        scheduler_process(redis_url=redis_url, tmp_path=tmp_path),
    ):
        clients = []
        for index, token in enumerate(vip_tokens + other_tokens):
            codec = KMPP if index % 2 else None
            client = DeviceClient(
                servers[index % 2].ws_url, token, **({"codec": codec} if codec else {})
            )
            await client.connect()
            clients.append(client)
        vip_clients, other_clients = clients[:3], clients[3:]
        for _ in range(100):
            online = await database_sync_to_async(
                Device.objects.filter(node__isnull=False).count
            )()
            if online == 5:
                break
            await asyncio.sleep(0.05)

        admin = AdminClient(servers[1].http_url)

        def marketer_sends():
            admin.login("mary", "pw-mary-123")
            form = {
                "app": str(app.pk),
                "name": "Spring sale",
                "title": "Spring sale",
                "body": "20% off for VIPs",
                "url": "https://shop.example/sale",
                "image": "",
                "data": '{"coupon": "VIP20"}',
                "audience_kind": "filter",
                "tags_any": "vip",
                "ttl_seconds": "3600",
                "priority": "high",
                "collapse_key": "",
                "throttle_per_second": "",
                "send_at_0": "",
                "send_at_1": "",
                "_save": "Save",
            }
            created = admin.post_form("/admin/campaigns/campaign/add/", form)
            assert created.status_code == 200
            campaign = Campaign.objects.get(name="Spring sale")
            page = admin.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
            assert '<strong id="est-matching">3</strong>' in page.text
            assert '<strong id="est-online">3</strong>' in page.text
            sent = admin.action("/admin/campaigns/campaign/", "send_now", [campaign.pk])
            assert "queued to send now" in sent.text
            again = admin.action(
                "/admin/campaigns/campaign/", "send_now", [campaign.pk]
            )
            assert "cannot become scheduled" in again.text
            connection.close()  # this worker thread's own connection
            return campaign

        campaign = await asyncio.to_thread(marketer_sends)
        pushes = [await client.receive_push(timeout=10) for client in vip_clients]
        assert {p.title for p in pushes} == {"Spring sale"}
        assert {p.data["coupon"] for p in pushes} == {"VIP20"}
        for client, push in zip(vip_clients, pushes, strict=True):
            await client.ack(push)
        await vip_clients[0].send(Opened(id=pushes[0].id, seq=pushes[0].seq))
        for client in other_clients:
            with pytest.raises(asyncio.TimeoutError):
                await client.receive_push(timeout=1)

        stats = {}
        for _ in range(100):
            stats = await database_sync_to_async(campaign_stats)(
                await database_sync_to_async(Campaign.objects.get)(pk=campaign.pk)
            )
            if stats["delivered"] == 3 and stats["opened"] == 1:
                break
            await asyncio.sleep(0.1)
        assert stats["targeted"] == 3
        assert stats["delivered"] == 3
        assert stats["opened"] == 1
        live = await asyncio.to_thread(
            admin.get, f"/admin/campaigns/campaign/{campaign.pk}/stats.json"
        )
        assert live.json()["stats"]["delivered"] == 3
        admin.close()
        for client in clients:
            await client.close()
