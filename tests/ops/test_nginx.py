"""nginx in front of two Daphne processes (deploy/nginx/kpns.conf, rendered
by deploy/render_nginx.py): TLS ends at nginx, device sockets spread over both
processes receive a campaign, and Daphne sees the real client address."""

import asyncio
import json

import httpx
import pytest
from channels.db import database_sync_to_async

from campaigns import lifecycle, sender
from devices.models import Delivery, DeliveryStatus, Device
from tests.e2e.servers import free_port
from tests.factories import make_app, make_device
from tests.ops.procs import client_tls, nginx_in_front, start_server, stopping
from tests.wsclient import DeviceClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def world(count):
    app = make_app()
    return app, [make_device(app) for _ in range(count)]


def send_campaign(app):
    campaign = lifecycle.campaign_create(
        app=app,
        name="Through nginx",
        title="Through nginx",
        audience_kind="all",
        ttl_seconds=3600,
    )
    campaign = sender.campaign_send_now(campaign=campaign)
    campaign.refresh_from_db()
    return str(campaign.message_id)


async def wait_for(check, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        value = await database_sync_to_async(check)()
        if value:
            return value
        await asyncio.sleep(0.05)
    return await database_sync_to_async(check)()


async def test_devices_behind_nginx_receive_a_campaign(
    redis_url, redis_layer, tmp_path
):
    ports = [free_port(), free_port()]
    servers = []
    with stopping(servers):
        for port in ports:
            servers.append(
                start_server(
                    port,
                    redis_url=redis_url,
                    tmp_path=tmp_path,
                    extra_env={"LOG_FORMAT": "json"},
                )
            )
        with nginx_in_front(ports, tmp_path) as proxy:
            tls = client_tls(proxy.prefix / "cert.pem")
            app, devices = await database_sync_to_async(world)(6)
            clients = []
            for _device, token in devices:
                client = DeviceClient(proxy.ws_url, token, ssl=tls)
                await client.connect()
                clients.append(client)
            ids = [device.pk for device, _ in devices]

            def nodes():
                rows = Device.objects.filter(pk__in=ids, node__isnull=False)
                return (
                    set(rows.values_list("node", flat=True))
                    if rows.count() == 6
                    else None
                )

            held = await wait_for(nodes)
            # least_conn spreads the sockets over both processes.
            assert held is not None and len(held) == 2, held

            message_id = await database_sync_to_async(send_campaign)(app)
            for client in clients:
                push = await client.receive_push(timeout=10)
                assert push.id == message_id
                await client.ack(push)

            def all_delivered():
                statuses = Delivery.objects.filter(message_id=message_id).values_list(
                    "status", flat=True
                )
                return len(statuses) == 6 and set(statuses) == {
                    DeliveryStatus.DELIVERED
                }

            assert await wait_for(all_delivered), "acks through nginx not recorded"
            for client in clients:
                await client.close()

            # HTTP: readiness over TLS, a request id, the real client address
            # (from another loopback address; a client's own X-Forwarded-For
            # is replaced by nginx, not trusted).
            def http_checks():
                transport = httpx.HTTPTransport(local_address="127.0.0.2", verify=tls)
                with httpx.Client(transport=transport, timeout=10) as http:
                    ready = http.get(
                        f"{proxy.https_url}/readyz",
                        headers={"X-Forwarded-For": "203.0.113.9"},
                    )
                with httpx.Client(timeout=10) as http:
                    plain = httpx.get(
                        f"http://127.0.0.1:{proxy.http_port}/admin/",
                        follow_redirects=False,
                    )
                    health = http.get(f"http://127.0.0.1:{proxy.http_port}/healthz")
                    plain_ready = http.get(f"http://127.0.0.1:{proxy.http_port}/readyz")
                    plain_metrics = http.get(
                        f"http://127.0.0.1:{proxy.http_port}/metrics",
                        follow_redirects=False,
                    )
                return ready, plain, health, plain_ready, plain_metrics

            ready, plain, health, plain_ready, plain_metrics = await asyncio.to_thread(
                http_checks
            )
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "ready"
            request_id = ready.headers["X-Request-ID"]
            assert plain.status_code == 301
            assert plain.headers["Location"].startswith(
                f"https://127.0.0.1:{proxy.https_port}/admin/"
            )
            assert health.status_code == 200
            # Probes over plain HTTP are proxied; /metrics is refused there,
            # never redirected (a followed redirect sent the token in clear).
            assert plain_ready.status_code == 200, plain_ready.text
            assert plain_metrics.status_code == 403
            assert "Location" not in plain_metrics.headers

            await asyncio.sleep(0.3)  # the access line is written after the response
            lines = [
                json.loads(line)
                for server in servers
                for line in server.output().splitlines()
                if line.startswith("{")
            ]
            access = [line for line in lines if line.get("request_id") == request_id]
            assert access, "no access log line with nginx's request id"
            assert access[0]["path"] == "/readyz"
            assert access[0]["client"] == "127.0.0.2", access[0]
            assert request_id in proxy.access_log()
