"""A personalised campaign on real servers: a marketer saves
`Hi {{ first_name|default:"there" }}` in the admin and sends it; devices
connected to two real Daphne processes each receive their own name (or the
default), as one message per distinct content."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import connection

from campaigns.models import Campaign, CampaignMessage
from campaigns.roles import marketer_group
from campaigns.selectors import campaign_stats
from devices.delivery.protocol import KMPP
from devices.models import Delivery, Device
from tests.e2e.admin_client import AdminClient
from tests.e2e.servers import daphne_servers, scheduler_process
from tests.factories import make_app, make_device
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HI = 'Hi {{ first_name|default:"there" }}'
PEOPLE = {"amelie": "Amélie", "bruno": "Bruno", "nobody": None}


def setup_world():
    app = make_app(name="Shop")
    tokens = {}
    for alias, name in PEOPLE.items():
        attributes = {"first_name": name} if name else {}
        _device, tokens[alias] = make_device(
            app, alias=alias, tags=["vip"], attributes=attributes
        )
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(marketer_group())
    return app, tokens


def _sent_messages(campaign):
    links = CampaignMessage.objects.filter(campaign_id=campaign.pk)
    deliveries = Delivery.objects.filter(message_id__in=links.values("message_id"))
    return {str(m) for m in deliveries.values_list("message_id", flat=True)}


async def test_each_device_receives_its_own_name(redis_url, tmp_path):
    app, tokens = await database_sync_to_async(setup_world)()
    with (
        daphne_servers(2, redis_url=redis_url, tmp_path=tmp_path) as servers,
        scheduler_process(redis_url=redis_url, tmp_path=tmp_path),
    ):
        clients = {}
        for index, (alias, token) in enumerate(tokens.items()):
            extra = {"codec": KMPP} if index % 2 else {}
            clients[alias] = DeviceClient(servers[index % 2].ws_url, token, **extra)
            await clients[alias].connect()
        for _ in range(100):
            online = await database_sync_to_async(
                Device.objects.filter(node__isnull=False).count
            )()
            if online == len(tokens):
                break
            await asyncio.sleep(0.05)

        admin = AdminClient(servers[1].http_url)

        def marketer_sends():
            admin.login("mary", "pw-mary-123")
            form = {
                "app": str(app.pk),
                "name": "Welcome back",
                "title": HI,
                "body": "{{ first_name|default:'Friend'|upper }}, your cart waits.",
                "url": "",
                "image": "",
                "data": '{"greeting": "{{ first_name }}", "screen": "cart"}',
                "audience_kind": "filter",
                "tags_any": "vip",
                "ttl_seconds": "3600",
                "priority": "normal",
                "collapse_key": "",
                "throttle_per_second": "",
                "send_at_0": "",
                "send_at_1": "",
                "_send_now": "1",
            }
            sent = admin.post_form("/admin/campaigns/campaign/add/", form)
            assert sent.status_code == 200
            assert "queued to send now" in sent.text
            campaign = Campaign.objects.get(name="Welcome back")
            connection.close()  # this worker thread's own connection
            return campaign

        campaign = await asyncio.to_thread(marketer_sends)
        pushes = {
            alias: await client.receive_push(timeout=10)
            for alias, client in clients.items()
        }
        assert pushes["amelie"].title == "Hi Amélie"
        assert pushes["bruno"].title == "Hi Bruno"
        assert pushes["nobody"].title == "Hi there"
        assert pushes["amelie"].body == "AMÉLIE, your cart waits."
        assert pushes["nobody"].body == "FRIEND, your cart waits."
        assert pushes["bruno"].data == {"greeting": "Bruno", "screen": "cart"}
        assert pushes["nobody"].data == {"greeting": "", "screen": "cart"}
        # One message per distinct content: three names, three messages.
        assert len({push.id for push in pushes.values()}) == 3
        for alias, client in clients.items():
            await client.ack(pushes[alias])
        # Beside them, only the campaign's own content as written (its
        # base message), which no device was sent.
        sent_messages = await database_sync_to_async(_sent_messages)(campaign)
        assert sent_messages == {push.id for push in pushes.values()}
        stats = {}
        for _ in range(100):
            stats = await database_sync_to_async(campaign_stats)(
                await database_sync_to_async(Campaign.objects.get)(pk=campaign.pk)
            )
            if stats["delivered"] == 3:
                break
            await asyncio.sleep(0.1)
        assert stats["targeted"] == 3 and stats["delivered"] == 3
        for client in clients.values():
            await client.close()
