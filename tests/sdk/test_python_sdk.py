"""The Python SDK and the `kpns` command against a real Daphne."""

import asyncio
import json
import os
import subprocess
import sys

import pytest
from channels.db import database_sync_to_async

from devices.delivery import revocation
from devices.delivery.pushes import push_to_devices
from devices.models import Delivery, Device
from devices.registry import services as registry
from kpns_sdk import Client, FileStore, MemoryStore, StateChange
from kpns_sdk.cli import main as cli_main
from tests.e2e.servers import ROOT
from tests.factories import make_app

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KPNS = [sys.executable, "-m", "kpns_sdk"]


async def wait_for(check, timeout=10.0, what="condition"):
    for _ in range(int(timeout / 0.05)):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(message_id, device_id):
    row = Delivery.objects.filter(message_id=message_id, device_id=device_id).first()
    return row.status if row else None


@pytest.mark.parametrize("encoding", ["json", "kmpp"])
async def test_registers_receives_acks_after_the_handler_and_reports_opens(
    sdk_server, redis_layer, encoding
):
    app = await database_sync_to_async(make_app)()
    store = MemoryStore()
    received, states = [], []
    handled = asyncio.Event()

    async def on_push(push):
        received.append(push)
        await asyncio.sleep(0.3)
        handled.set()

    client = Client(
        sdk_server.http_url,
        app.client_key,
        store=store,
        encoding=encoding,
        device={"tags": ["py"], "alias": "user-1"},
        on_push=on_push,
        on_state=states.append,
    )
    async with client:
        await wait_for(lambda: client.state == "connected", what="connected")
        assert [str(s) for s in states[:3]] == [
            "registering",
            "connecting",
            "connected",
        ]
        assert store.data["device_id"] == client.device_id
        message, _ = await database_sync_to_async(push_to_devices)(
            app=app,
            device_ids=[client.device_id],
            title="Spring sale",
            data={"coupon": "VIP20", "n": [1, 2.5]},
        )
        await wait_for(lambda: received, what="the push")
        assert received[0].id == str(message.pk)
        assert received[0].data == {"coupon": "VIP20", "n": [1, 2.5]}
        status = await database_sync_to_async(status_of)(message.pk, client.device_id)
        assert status in ("pending", "sent"), "acked only once the handler returns"
        await asyncio.wait_for(handled.wait(), 5)

        async def delivered():
            s = await database_sync_to_async(status_of)(message.pk, client.device_id)
            return s == "delivered"

        await wait_for(delivered, what="the ack")
        assert store.data["last_seq"] == 1
        await client.opened(received[0])

        async def opened():
            s = await database_sync_to_async(status_of)(message.pk, client.device_id)
            return s == "opened"

        await wait_for(opened, what="the open")
    assert client.state == "stopped"


async def test_resumes_from_the_store_without_duplicates(sdk_server, redis_layer):
    app = await database_sync_to_async(make_app)()
    store = MemoryStore()
    seen = []
    client = Client(
        sdk_server.http_url, app.client_key, store=store, on_push=seen.append
    )
    async with client:
        await wait_for(lambda: client.state == "connected")
        device_id = client.device_id
        for title in ("one", "two"):
            await database_sync_to_async(push_to_devices)(
                app=app, device_ids=[device_id], title=title
            )
        await wait_for(lambda: client.last_seq == 2, what="two pushes")
    await database_sync_to_async(push_to_devices)(
        app=app, device_ids=[device_id], title="three"
    )
    again = Client(sdk_server.http_url, app.client_key, store=store)
    again.on("push", seen.append)
    async with again:
        await wait_for(lambda: again.last_seq == 3, what="the missed push")
        await asyncio.sleep(0.3)
    assert again.device_id == device_id
    assert [p.title for p in seen] == ["one", "two", "three"]


async def test_revoked_and_replaced_stop_in_plain_words(sdk_server, redis_layer):
    app = await database_sync_to_async(make_app)()
    store = MemoryStore()
    first_states: list[StateChange] = []
    first = Client(
        sdk_server.http_url, app.client_key, store=store, on_state=first_states.append
    )
    first.start()
    await wait_for(lambda: first.state == "connected")
    second = Client(sdk_server.http_url, app.client_key, store=store)
    second.start()
    await wait_for(lambda: first.state == "replaced", what="replaced")
    assert str(first_states[-1]) == "replaced: this device connected elsewhere"
    await wait_for(lambda: second.state == "connected")

    device = await database_sync_to_async(Device.objects.get)(pk=second.device_id)
    await database_sync_to_async(revocation.device_revoke)(device=device)
    await wait_for(lambda: second.state == "revoked", what="revoked")
    third_states: list[StateChange] = []
    third = Client(
        sdk_server.http_url, app.client_key, store=store, on_state=third_states.append
    )
    assert await asyncio.wait_for(third.run(), 15) == "revoked"
    assert str(third_states[-1]) == "token revoked: register again"
    await first.stop()
    await second.stop()


async def test_unknown_client_key_fails_without_retrying(sdk_server):
    states = []
    client = Client(sdk_server.http_url, "ck_nope", on_state=states.append)
    assert await asyncio.wait_for(client.run(), 15) == "failed"
    assert "Unknown client key" in str(states[-1])


async def test_reconnecting_states_have_a_delay_in_plain_words():
    states = []
    client = Client(
        "http://127.0.0.1:9", "ck_x", on_state=states.append, backoff_base=0.05
    )
    client.start()
    await wait_for(lambda: len(states) >= 4, what="retries")
    await client.stop()
    text = [str(s) for s in states if s.state == "reconnecting"][0]
    assert text.startswith("reconnecting in ") and text.endswith(
        " s (server unreachable)"
    )


def run_kpns(*args, timeout=30, **kwargs):
    return subprocess.run(
        [*KPNS, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kwargs,
    )


def test_cli_listen_prints_pushes_and_status_shows_the_device(
    sdk_server, redis_layer, tmp_path
):
    app = make_app()
    state = tmp_path / "device.json"
    listen = subprocess.Popen(
        [
            *KPNS,
            "listen",
            "--server",
            sdk_server.http_url,
            "--client-key",
            app.client_key,
            "--state",
            str(state),
            "--tags",
            "cli,ops",
            "--json",
            "--count",
            "1",
            "--open",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            stored = FileStore(state).load()
            if (
                stored
                and Device.objects.filter(
                    pk=stored["device_id"], node__isnull=False
                ).exists()
            ):
                break
            listen.poll()
            assert listen.returncode is None, listen.stderr.read()
            asyncio.run(asyncio.sleep(0.05))
        else:
            raise AssertionError("kpns listen did not connect")
        message, _ = push_to_devices(
            app=app,
            device_ids=[stored["device_id"]],
            title="Ops",
            body="Disk is full",
            data={"host": "db1"},
        )
        out, err = listen.communicate(timeout=15)
    finally:
        if listen.poll() is None:
            listen.kill()
            listen.wait()
    assert listen.returncode == 0, err
    push = json.loads(out.strip().splitlines()[0])
    assert (push["id"], push["title"], push["data"]) == (
        str(message.pk),
        "Ops",
        {"host": "db1"},
    )
    assert "registering a new device" in err
    assert "connected (device" in err
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    device = Device.objects.get(pk=stored["device_id"])
    assert registry.device_tags(device=device) == ["cli", "ops"]
    for _ in range(100):
        if status_of(message.pk, device.pk) == "opened":
            break
        asyncio.run(asyncio.sleep(0.05))
    assert status_of(message.pk, device.pk) == "opened"

    status = run_kpns("status", "--server", sdk_server.http_url, "--state", str(state))
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"server {sdk_server.http_url}: ready: database ok (" in status.stdout
    assert "channel layer ok (RedisChannelLayer" in status.stdout
    assert f"device {device.pk}" in status.stdout
    assert "last seq handled 1" in status.stdout
    assert "token valid; offline; platform desktop; tags cli, ops" in status.stdout

    revocation.device_revoke(device=device)
    revoked = run_kpns("listen", "--server", sdk_server.http_url, "--state", str(state))
    assert revoked.returncode == 3
    assert "token revoked: register again" in revoked.stdout
    status = run_kpns("status", "--server", sdk_server.http_url, "--state", str(state))
    assert status.returncode == 3
    assert "token revoked: register again (kpns listen --reset)" in status.stdout


def test_cli_listen_refuses_a_state_file_of_another_app(tmp_path, capsys):
    state = tmp_path / "device.json"
    FileStore(state).save(
        {"server": "http://x", "client_key": "ck_a", "device_id": "d", "token": "t"}
    )
    code = cli_main(
        [
            "listen",
            "--server",
            "http://x",
            "--client-key",
            "ck_b",
            "--state",
            str(state),
        ]
    )
    assert code == 2
    assert "holds a device of another app" in capsys.readouterr().err
    assert cli_main(["listen", "--state", str(tmp_path / "none.json")]) == 2
    assert "give --client-key" in capsys.readouterr().err


async def test_kpns_push_through_the_rest_api(sdk_server, redis_layer):
    from tests.factories import make_api_key

    app = await database_sync_to_async(make_app)()
    _key, api_key = await database_sync_to_async(make_api_key)(app)
    received = []
    client = Client(
        sdk_server.http_url,
        app.client_key,
        device={"tags": ["cli-push"]},
        on_push=received.append,
    )
    async with client:
        await wait_for(lambda: client.state == "connected", what="connected")
        result = await asyncio.to_thread(
            run_kpns,
            "push",
            "--server",
            sdk_server.http_url,
            "--api-key",
            api_key,
            "--tag",
            "cli-push",
            "--title",
            "From kpns push",
            "--data",
            '{"coupon": "CLI"}',
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("accepted: message ")
        assert result.stdout.endswith(" for 1 device(s)\n")
        await wait_for(lambda: received, what="the push")
    message_id = result.stdout.split()[2]
    assert (received[0].id, received[0].title, received[0].data) == (
        message_id,
        "From kpns push",
        {"coupon": "CLI"},
    )
    refused = await asyncio.to_thread(
        run_kpns, "push", "--server", sdk_server.http_url, "--api-key", "nope",
        "--tag", "cli-push", "--title", "t",
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("kpns: refused: HTTP 401")
