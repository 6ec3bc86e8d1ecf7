"""Logs: JSON lines with request and message ids, never a token or a body."""

import asyncio
import json
import logging

import httpx
import pytest
from channels.db import database_sync_to_async

from devices.delivery import pushes
from devices.models import App, Device
from kpns_site.logs import JsonFormatter, redact
from tests.e2e.servers import free_port
from tests.factories import make_api_key, make_app
from tests.ops.procs import start_server, stopping
from tests.wsclient import DeviceClient

BODY = "Your secret discount code is KITTEN-4242"


def test_json_lines_keep_plain_extras_and_drop_objects():
    record = logging.LogRecord(
        "kpns.x", logging.INFO, __file__, 1, "hi %s", ("a",), None
    )
    record.message_id = "m-1"
    record.request = object()  # Django's request on error logs: never written
    record.token = "abc"
    record.request_id = "r-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "hi a"
    assert line["message_id"] == "m-1" and line["request_id"] == "r-1"
    assert "request" not in line and "token" not in line


def test_redact_hides_device_tokens_and_credentials():
    text = redact(
        "subprotocols ['json.v1', 'kpns.token.AbC-12_x'] "
        "Authorization: Bearer sk_live_123 token=zz9 {'api_key': 'k-1'}"
    )
    for secret in ("AbC-12_x", "sk_live_123", "zz9", "k-1"):
        assert secret not in text


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_no_token_or_body_in_any_log_of_a_register_connect_push_flow(
    redis_url, redis_layer, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    procs = []
    with stopping(procs):
        server = start_server(
            free_port(),
            redis_url=redis_url,
            tmp_path=tmp_path,
            extra_env=env,
            args=("--access-log",),
        )
        procs.append(server)
        app = await database_sync_to_async(make_app)()

        def register():
            response = httpx.post(
                f"{server.http_url}/api/v1/devices/register",
                json={"client_key": app.client_key, "platform": "web"},
                headers={"X-Request-ID": "req-register-1"},
                timeout=10,
            )
            assert response.status_code in (200, 201), response.text
            assert response.headers["X-Request-ID"] == "req-register-1"
            return response.json()

        registered = await asyncio.to_thread(register)
        token = registered["token"]
        device_id = registered.get("device_id") or registered.get("id")

        # A handshake with a wrong token, and the right one.
        with pytest.raises(Exception):  # noqa: B017
            bad = DeviceClient(server.ws_url, token[::-1])
            await bad.connect()
        client = DeviceClient(server.ws_url, token)
        await client.connect()
        for _ in range(100):
            if await database_sync_to_async(
                Device.objects.filter(pk=device_id, node__isnull=False).exists
            )():
                break
            await asyncio.sleep(0.05)
        fresh = await database_sync_to_async(App.objects.get)(pk=app.pk)
        message, _ = await database_sync_to_async(pushes.push_to_devices)(
            app=fresh, device_ids=[device_id], title="Sale", body=BODY
        )
        push = await client.receive_push(timeout=10)
        await client.ack(push)
        await asyncio.sleep(1.2)  # receipts flushed, metrics published
        await client.close()
        await asyncio.sleep(0.3)

    output = server.output()
    # This process sends the push; its device clients' own libraries
    # (websockets, httpx) log their handshakes at DEBUG and are not KPNS.
    client_side = ("websockets", "httpx", "httpcore")
    local = "\n".join(
        JsonFormatter().format(r)
        for r in caplog.records
        if not r.name.startswith(client_side)
    )
    for text in (output, local):
        assert token not in text
        assert BODY not in text
    assert app.client_key not in output  # the register body is not logged either

    lines = [json.loads(raw) for raw in output.splitlines()]  # each one JSON
    access = [line for line in lines if line.get("logger") == "kpns.access"]
    register_line = [line for line in access if line["request_id"] == "req-register-1"]
    assert register_line and register_line[0]["path"] == "/api/v1/devices/register"
    assert register_line[0]["status"] in (200, 201)
    pushed = [r for r in caplog.records if getattr(r, "message_id", None)]
    assert any(r.message_id == str(message.pk) for r in pushed)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_every_line_of_a_server_is_json_even_bad_requests_and_tracebacks(
    redis_url, tmp_path
):
    """A real kpns_serve in DEBUG (where Django adds a plain-text console) with
    LOG_FORMAT=json: its banner, Django's "Bad Request" lines, a disallowed
    host, a 500 with its traceback and the drain at SIGTERM are all JSON."""
    app = await database_sync_to_async(make_app)()
    _, key = await database_sync_to_async(make_api_key)(app)
    env = {
        "LOG_FORMAT": "json",
        "DEBUG": "true",
        # A broken setting makes creating a webhook raise: a real 500.
        "KPNS_WEBHOOK_ALLOWED_NETWORKS": "not-a-network",
        "PYTHONWARNINGS": "always",
    }
    procs = []
    with stopping(procs):
        server = start_server(
            free_port(), redis_url=redis_url, tmp_path=tmp_path, extra_env=env
        )
        procs.append(server)

        def provoke():
            with httpx.Client(base_url=server.http_url, timeout=10) as http:
                bad = http.post(
                    "/api/v1/devices/register",
                    content=b"{not json",
                    headers={"Content-Type": "application/json"},
                )
                host = http.get("/admin/", headers={"Host": "evil.example"})
                boom = http.post(
                    "/api/v1/webhooks",
                    json={"url": "https://8.8.8.8/h", "events": ["message.opened"]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                return bad.status_code, host.status_code, boom.status_code

        assert await asyncio.to_thread(provoke) == (400, 400, 500)
        await asyncio.sleep(0.5)
        server.signal(15)  # SIGTERM: the drain logs too
        await asyncio.to_thread(server.wait, 30)

    output = server.output()
    assert output.strip()
    lines = []
    for raw in output.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            pytest.fail(f"not a JSON line: {raw!r}\n{output}")
        assert isinstance(line, dict) and {"ts", "level", "logger", "msg"} <= set(line)
        lines.append(line)
    messages = [(line["logger"], line["msg"]) for line in lines]
    assert any(m.startswith("KPNS serving on") for _, m in messages), messages
    assert ("django.request", "Bad Request: /api/v1/devices/register") in messages
    assert any(name == "django.security.DisallowedHost" for name, _ in messages)
    [error] = [line for line in lines if line["msg"].startswith("Internal Server")]
    assert error["level"] == "ERROR"
    assert "Traceback" in error["exc"] and "ImproperlyConfigured" in error["exc"]
