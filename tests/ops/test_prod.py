"""`make prod` (deploy/prod.sh): supervisord runs gunicorn, two Daphne
processes, the scheduler and nginx with production settings (DEBUG off, JSON
logs); a SIGKILLed process is restarted by supervisord, `deploy/kpnsctl roll`
restarts every Daphne one at a time and reloads gunicorn's workers while an
integrator pushes through nginx's API, and devices connected through nginx
get every push exactly once."""

import asyncio
import contextlib
import glob
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from channels.db import database_sync_to_async

from devices.delivery import pushes
from tests.e2e.servers import ROOT, child_env, free_port
from tests.factories import make_api_key, make_app, make_device
from tests.ops.fleet import Device as FleetDevice
from tests.ops.fleet import Fleet
from tests.ops.procs import client_tls, nginx_binary

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def two_free_ports() -> int:
    for _ in range(50):
        base = free_port()
        try:
            with socket.socket() as one, socket.socket() as two:
                one.bind(("127.0.0.1", base))
                two.bind(("127.0.0.1", base + 1))
            return base
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def start_prod(env, log):
    # Its own session: supervisord puts each child in its own process group,
    # so the session id is what finds them all if the test must kill them.
    return subprocess.Popen(
        ["bash", "deploy/prod.sh"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_session(leader):
    """SIGKILL what is left of the session this test started (by pid)."""
    if leader.poll() is None:
        leader.kill()
        leader.wait(timeout=10)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader.pid:  # field 6 of stat: the session id
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stat.split("/")[2]), signal.SIGKILL)


def kpnsctl(env, *args, timeout=120):
    return subprocess.run(
        ["bash", "deploy/kpnsctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def statuses(env):
    out = kpnsctl(env, "status").stdout
    result = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            pid = parts[3].rstrip(",") if len(parts) > 3 and parts[2] == "pid" else None
            result[parts[0]] = (parts[1], pid)
    return result


def push_all(app, ids, index):
    message, _ = pushes.push_to_devices(
        app=app, device_ids=ids, title=f"prod {index}", ttl_seconds=3600
    )
    return str(message.pk)


def api_key(app):
    return make_api_key(app, scopes=["push:send"])[1]


async def test_make_prod_supervises_restarts_and_rolls(redis_url, tmp_path):
    nginx_binary()
    base = two_free_ports()
    https, http = free_port(), free_port()
    run = tmp_path / "prod"
    env = child_env(
        redis_url,
        {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1:{https}",
            "KPNS_RUN_DIR": str(run),
            "KPNS_SERVERS": "2",
            "KPNS_BASE_PORT": str(base),
            "KPNS_HTTP_PORT": str(free_port()),
            "KPNS_HTTP_WORKERS": "1",
            "KPNS_HTTPS_LISTEN": f"127.0.0.1:{https}",
            "KPNS_HTTP_LISTEN": f"127.0.0.1:{http}",
            "KPNS_DRAIN_SECONDS": "5",
            "KPNS_ROLL_PAUSE": "2.5",
        },
    )
    log = tmp_path / "prod.out"
    supervisor = start_prod(env, log)
    try:
        tls = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert supervisor.poll() is None, log.read_text()
            cert = run / "tls" / "cert.pem"
            if cert.exists():
                tls = client_tls(cert)
                try:
                    ready = await asyncio.to_thread(
                        httpx.get,
                        f"https://127.0.0.1:{https}/readyz",
                        verify=tls,
                        timeout=5,
                    )
                    if ready.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(0.3)
        else:
            pytest.fail(f"never ready:\n{log.read_text()}")
        names = {f"web:web-{base}", f"web:web-{base + 1}", "scheduler:scheduler-0"}
        names |= {"http", "nginx"}
        # supervisord calls a program RUNNING after startsecs (2 s); /readyz
        # through nginx (gunicorn's) may answer before.
        for _ in range(100):
            running = await asyncio.to_thread(statuses, env)
            if names <= set(running) and all(
                running[name][0] == "RUNNING" for name in names
            ):
                break
            await asyncio.sleep(0.2)
        assert names <= set(running), running
        assert all(running[name][0] == "RUNNING" for name in names), running
        names -= {"http", "nginx"}

        def make():
            app = make_app()
            return app, [make_device(app) for _ in range(6)]

        app, devices = await database_sync_to_async(make)()
        ids = [device.pk for device, _ in devices]
        url = f"wss://127.0.0.1:{https}/ws/v1/device/"
        fleet_devices = [
            FleetDevice(device.pk, token, url=lambda: url, ssl=tls)
            for device, token in devices
        ]
        message_ids = []
        async with Fleet(fleet_devices) as fleet:
            assert await fleet.all_connected(20)

            # Killed outright: supervisord starts it again on its port.
            victim = f"web:web-{base}"
            old_pid = running[victim][1]
            os.kill(int(old_pid), signal.SIGKILL)
            restarted = None
            for _ in range(150):
                state, pid = (await asyncio.to_thread(statuses, env)).get(victim)
                if state == "RUNNING" and pid != old_pid:
                    restarted = pid
                    break
                await asyncio.sleep(0.2)
            assert restarted, "supervisord did not restart the killed process"
            assert await fleet.all_connected(20)
            message_ids.append(await database_sync_to_async(push_all)(app, ids, 0))

            key = await database_sync_to_async(api_key)(app)
            statuses_seen = []

            async def keep_pushing():
                # Through nginx and gunicorn, as an integrator does; a
                # retry keeps its Idempotency-Key.
                async with httpx.AsyncClient(
                    base_url=f"https://127.0.0.1:{https}", verify=tls, timeout=10
                ) as http:
                    for index in range(1, 16):
                        headers = {
                            "Authorization": f"Bearer {key}",
                            "Idempotency-Key": f"prod-{index}",
                        }
                        body = {
                            "device_ids": [str(i) for i in ids],
                            "title": f"prod {index}",
                            "ttl_seconds": 3600,
                        }
                        for _ in range(20):
                            answer = await http.post(
                                "/api/v1/pushes", json=body, headers=headers
                            )
                            statuses_seen.append(answer.status_code)
                            if answer.status_code == 202:
                                message_ids.append(answer.json()["message_id"])
                                break
                            await asyncio.sleep(0.2)
                        await asyncio.sleep(0.5)

            pusher = asyncio.ensure_future(keep_pushing())
            rolled = await asyncio.to_thread(kpnsctl, env, "roll")
            assert rolled.returncode == 0, rolled.stdout + rolled.stderr
            await asyncio.wait_for(pusher, 60)
            everything = set(message_ids)
            for _ in range(300):
                if fleet.have(everything):
                    break
                await asyncio.sleep(0.1)
        assert set(statuses_seen) == {202}, statuses_seen
        assert len(everything) == 16
        for device in fleet_devices:
            assert {m for _, m in device.seen} == everything
            assert [s for s, _ in device.seen] == list(range(1, len(everything) + 1))
        assert sum(d.closes.count(1012) for d in fleet_devices) >= 6

        after = await asyncio.to_thread(statuses, env)
        assert all(after[name][0] == "RUNNING" for name in names), after
        assert all(after[name][1] != running[name][1] for name in names), after
        # gunicorn's workers were replaced (new ones first), its master kept.
        assert after["http"] == running["http"], after
        http_log = (run / "logs" / "http.log").read_text()
        assert "Handling signal: ttin" in http_log, http_log[-2000:]
        assert "Handling signal: ttou" in http_log, http_log[-2000:]

        # Stopping supervisord stops everything (drains included), in bound.
        supervisor.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(supervisor.wait, 60) == 0
        for port in (base, base + 1, https, int(env["KPNS_HTTP_PORT"])):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        output = log.read_text()
        assert "exit status 0" in output
        web_logs = (run / "logs" / f"web-{base + 1}.log").read_text()
        assert '"logger": "devices.delivery.drain", "msg": "node drained"' in web_logs
    finally:
        kill_session(supervisor)
