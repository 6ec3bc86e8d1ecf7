"""End-to-end encrypted pushes with the Python SDK against a real Daphne,
PostgreSQL and Redis (docs/e2ee.md): the integrator's backend reads the key
directory and sends ciphertext through the push API, the device decrypts it,
and neither the database, nor Redis (every command it ran during the push),
nor the server's and the scheduler's logs hold the plaintext."""

import asyncio
import socket
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager

import httpx
import pytest
import redis
from channels.db import database_sync_to_async
from django.db import connection

from kpns_sdk import Client, MemoryStore
from kpns_sdk.e2ee import encrypt_for_device
from tests.e2e.servers import daphne_servers, scheduler_process
from tests.factories import make_api_key, make_app
from tests.sdk.conftest import SERVER_ENV
from tests.sdk.test_python_sdk import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def verbose_servers(redis_url, tmp_path):
    """Two Daphnes logging at DEBUG (the most they ever write about a push):
    a push sent to one for a device on the other crosses Redis."""
    env = {**SERVER_ENV, "LOG_LEVEL": "DEBUG"}
    with daphne_servers(
        2, redis_url=redis_url, tmp_path=tmp_path, extra_env=env
    ) as servers:
        yield servers


@pytest.fixture
def verbose_scheduler(redis_url, tmp_path):
    """A scheduler logging at DEBUG next to the server; yields its log."""
    env = {**SERVER_ENV, "LOG_LEVEL": "DEBUG"}
    log = tmp_path / "scheduler.log"
    with scheduler_process(redis_url=redis_url, tmp_path=tmp_path, extra_env=env):
        deadline = time.monotonic() + 30
        while "KPNS scheduler running" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield log


@contextmanager
def redis_commands(url: str, seconds: float = 60):
    """Every command the Redis server runs while open, as MONITOR prints
    them (every database's: our random secret cannot come from another),
    read by a thread from a plain socket until exit or `seconds` pass."""
    options = redis.Redis.from_url(url).connection_pool.connection_kwargs
    sock = socket.create_connection((options["host"], options["port"]), timeout=10)
    sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
    assert sock.recv(5) == b"+OK\r\n", "MONITOR did not start"
    sock.settimeout(0.5)
    received: list[bytes] = []
    stop = threading.Event()

    def listen() -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue  # idle: look at the stop flag again
            if not chunk:
                return
            received.append(chunk)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    commands: list[str] = []
    try:
        yield commands
    finally:
        stop.set()
        thread.join(seconds)
        sock.close()
        commands.extend(b"".join(received).decode("latin-1").splitlines())


def database_dump() -> str:
    """Every row of the test database, as pg_dump writes it."""
    settings = connection.settings_dict
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "--host",
            settings["HOST"] or "127.0.0.1",
            "--port",
            str(settings["PORT"] or 5432),
            "--username",
            settings["USER"] or "postgres",
            settings["NAME"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dump.stdout


async def backend_send(server: str, api_key: str, device_id: str, payload, **extra):
    """What an integrator's backend does: look the key up, encrypt, send."""
    auth = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(timeout=10) as http:
        directory = await http.get(
            f"{server}/api/v1/device-keys",
            params={"device_id": device_id},
            headers=auth,
        )
        assert directory.status_code == 200, directory.text
        (entry,) = directory.json()["results"]
        encrypted = encrypt_for_device(entry["public_key"], payload, kid=entry["kid"])
        sent = await http.post(
            f"{server}/api/v1/pushes",
            json={"device_ids": [device_id], "encrypted": encrypted, **extra},
            headers=auth,
        )
    return sent, encrypted


@pytest.mark.timeout(120)
@pytest.mark.parametrize("encoding", ["json", "kmpp"])
async def test_an_encrypted_push_decrypts_on_the_device_and_kpns_never_holds_it(
    verbose_servers, verbose_scheduler, redis_layer, redis_url, encoding
):
    device_server, api_server = verbose_servers
    if connection.vendor != "postgresql":
        pytest.skip("searches the PostgreSQL database with pg_dump")
    app = await database_sync_to_async(make_app)()
    _key, api_key = await database_sync_to_async(make_api_key)(app)
    secret = f"OTP-{uuid.uuid4().hex}"
    payload = {
        "title": f"Your code {secret}",
        "body": f"Body {secret}",
        "data": {"otp": secret},
    }
    received = []
    client = Client(
        device_server.http_url,
        app.client_key,
        store=MemoryStore(),
        encoding=encoding,
        on_push=received.append,
    )
    async with client:
        await wait_for(lambda: client.state == "connected", what="connected")
        kid = await client.enable_encryption()
        with redis_commands(redis_url) as commands:
            sent, encrypted = await backend_send(
                api_server.http_url,
                api_key,
                client.device_id,
                payload,
                title="New message",
            )
            assert sent.status_code == 202, sent.text
            await wait_for(lambda: received, what="the encrypted push")
            # The ack's receipt and a scheduler tick or two pass through too.
            await asyncio.sleep(1.5)
    push = received[0]
    assert (push.title, push.body, push.data) == (
        payload["title"],
        payload["body"],
        payload["data"],
    )
    assert push.enc == encrypted and push.enc["kid"] == kid

    dump = await asyncio.to_thread(database_dump)
    logs = api_server.output() + device_server.output()
    assert encrypted["ct"] in dump  # the dump holds the message rows...
    assert "New message" in dump
    assert secret not in dump  # ...but never the plaintext
    assert "push committed" in logs  # the server logged the push...
    assert secret not in logs  # ...and nothing of its content
    # Redis carried the push (the wake-up from the API's server to the
    # device's, with its ciphertext) and never its plaintext.
    traffic = "\n".join(commands)
    assert encrypted["ct"] in traffic
    assert secret not in traffic
    # The scheduler ran all along (started before the push, ticking) and
    # logged nothing of the content either.
    scheduler_log = verbose_scheduler.read_text(errors="replace")
    assert "KPNS scheduler running" in scheduler_log
    assert secret not in scheduler_log


@pytest.mark.timeout(120)
async def test_after_a_rotation_the_previous_key_still_decrypts_and_older_is_reported(
    sdk_server, redis_layer
):
    app = await database_sync_to_async(make_app)()
    _key, api_key = await database_sync_to_async(make_api_key)(app)
    store = MemoryStore()
    received, unreadable = [], []
    client = Client(sdk_server.http_url, app.client_key, store=store)
    client.on("push", received.append)
    client.on("undecryptable", unreadable.append)
    device_id, _token = await client.register()
    server = sdk_server.http_url
    # Offline, three key generations: a push queued to each of the first two.
    first = await client.enable_encryption()
    sent, _ = await backend_send(server, api_key, device_id, {"title": "to first"})
    assert sent.status_code == 202, sent.text
    second = await client.enable_encryption(rotate=True)
    sent, _ = await backend_send(server, api_key, device_id, {"title": "to second"})
    assert sent.status_code == 202, sent.text
    third = await client.enable_encryption(rotate=True)
    assert len({first, second, third}) == 3
    assert len(store.data["e2ee_keys"]) == 2  # the third and the second
    sent, _ = await backend_send(server, api_key, device_id, {"title": "to third"})
    assert sent.status_code == 202, sent.text
    async with client:
        await wait_for(lambda: len(received) == 2 and unreadable, what="pushes")
        await wait_for(lambda: client.last_seq == 3, what="all three handled")
    # The previous key still reads what was queued to it; the one before is
    # reported as undecryptable, never handed over as garbage.
    assert [p.title for p in received] == ["to second", "to third"]
    ((push, error),) = unreadable
    assert push.enc["kid"] == first and "no key" in str(error)
