"""The platform under test and its load clients, as processes: the
production shape, gunicorn for the API, K Daphne processes for the sockets
and a scheduler (docs/operations.md)."""

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.run import ROOT, SOCKETS_PER_CLIENT

# The profiler of the bench extra, beside this interpreter.
PY_SPY = str(Path(sys.executable).parent / "py-spy")


class Platform:
    def __init__(
        self,
        *,
        devices: int,
        servers: int,
        register: str = "copy",
        http_workers: int = 2,
        sync_pings: bool = False,
    ) -> None:
        self.device_count = devices
        # The load clients' devices ping at once instead of each on its own
        # timer (bench/loadclient.py, --sync-pings).
        self.sync_pings = sync_pings
        self.server_count = servers
        self.http_workers = http_workers
        # "copy": devices inserted in bulk (fast, for 20,000 and more);
        # "api": registered one by one through POST /api/v1/devices/register,
        # as device SDKs do.
        self.register = register
        self.servers: list[tuple[int, subprocess.Popen]] = []
        self.scheduler: subprocess.Popen | None = None
        self.http: subprocess.Popen | None = None
        self.http_port = 0
        self.clients: list[subprocess.Popen] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="kpns-bench-"))
        self.redis = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)

    # Set-up and tear-down ---------------------------------------------------

    def __enter__(self) -> "Platform":
        self.reset()
        if self.register == "api":
            from devices.registry import services as registry

            self.app, self.tokens = registry.app_create(name="Bench"), []
        else:
            self.app, self.tokens = seed(self.device_count)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for _ in range(self.server_count):
            port = free_port()
            log = (self.tmp / f"server-{port}.log").open("w")
            process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "kpns_serve",
                    "--port",
                    str(port),
                    "--application",
                    "bench.asgi.application",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.servers.append((port, process))
        # The admin and the API: gunicorn, as deploy/supervisord.conf runs it.
        self.http_port = free_port()
        self.http = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                "deploy/gunicorn.conf.py",
                "kpns_site.wsgi:application",
            ],
            cwd=ROOT,
            env={
                **env,
                "KPNS_BIND": "127.0.0.1",
                "KPNS_HTTP_PORT": str(self.http_port),
                "KPNS_HTTP_WORKERS": str(self.http_workers),
            },
            stdout=(self.tmp / "http.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        self.scheduler = subprocess.Popen(
            [sys.executable, "manage.py", "kpns_scheduler", "--poll", "0.2"],
            cwd=ROOT,
            # One line per chunk: what a stalled campaign did is in the log.
            env={**env, "LOG_LEVEL": "INFO"},
            stdout=(self.tmp / "scheduler.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            for port, process in [*self.servers, (self.http_port, self.http)]:
                wait_for_port(port, process)
                # Load the Django app before taking the memory baseline.
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        except BaseException:
            self.__exit__()  # no orphaned server or scheduler
            raise
        if self.register == "api":
            self.tokens = self.register_through_api(self.device_count)
        self.baseline_rss = self.server_rss()
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self.clients:
            try:
                self.command(client, "close", timeout=20)
            except Exception:
                client.kill()
        for process in [p for _, p in self.servers] + [self.scheduler, self.http]:
            if process is not None and process.poll() is None:
                process.terminate()
        servers = [p for _, p in self.servers] + ([self.http] if self.http else [])
        for process in [c for c in self.clients] + servers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.scheduler is not None:
            self.scheduler.wait(timeout=15)

    def reset(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE devices_delivery, devices_message, devices_devicetag, "
                "devices_device, devices_node, campaigns_campaignslice, "
                "campaigns_campaign, devices_app CASCADE"
            )
        self.redis.flushdb()

    # Load clients -----------------------------------------------------------

    def connect_all(self, path: str = "/ws/v1/device/") -> dict[str, Any]:
        """Start the load clients and open every device socket."""
        self.clients = self.start_clients(self.tokens, path, first_source=2)
        result = self.connect(self.clients)
        if path == "/ws/v1/device/":
            self.wait_online(self.device_count)
        return result

    def start_clients(
        self, tokens: list[str], path: str, first_source: int
    ) -> list[subprocess.Popen]:
        """Load-client processes for these tokens, each on its own source IP."""
        urls = [f"ws://127.0.0.1:{port}{path}" for port, _ in self.servers]
        count = max(1, math.ceil(len(tokens) / SOCKETS_PER_CLIENT))
        per = math.ceil(len(tokens) / count)
        clients = []
        for index in range(count):
            token_file = self.tmp / f"tokens-{first_source + index}.json"
            token_file.write_text(json.dumps(tokens[index * per : (index + 1) * per]))
            command = [sys.executable, "-m", "bench.loadclient"]
            command += ["--devices", str(token_file)]
            command += ["--source", f"127.0.0.{first_source + index}"]
            if self.sync_pings:
                command.append("--sync-pings")
            for url in urls:
                command += ["--url", url]
            clients.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        return clients

    def connect(self, clients: list[subprocess.Popen]) -> dict[str, Any]:
        started = time.time()
        for client in clients:  # all at once: a storm, not a queue
            assert client.stdin is not None
            client.stdin.write("connect\n")
            client.stdin.flush()
        answers = [self._read_answer(c, timeout=600) for c in clients]
        return {
            "connected": sum(a["connected"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "seconds": round(time.time() - started, 3),
        }

    def close_clients(self) -> None:
        closed = self.broadcast_command("close", timeout=120)
        assert all(answer.get("closed") for answer in closed)
        for client in self.clients:
            client.wait(timeout=30)
        self.clients.clear()

    def broadcast_command(self, command: str, timeout: float) -> list[dict[str, Any]]:
        for client in self.clients:
            assert client.stdin is not None
            client.stdin.write(command + "\n")
            client.stdin.flush()
        return [self._read_answer(client, timeout) for client in self.clients]

    def command(self, client: subprocess.Popen, command: str, timeout: float) -> Any:
        assert client.stdin is not None
        client.stdin.write(command + "\n")
        client.stdin.flush()
        return self._read_answer(client, timeout)

    def _read_answer(self, client: subprocess.Popen, timeout: float) -> dict[str, Any]:
        import selectors

        assert client.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(client.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError("load client did not answer")
        return json.loads(client.stdout.readline())

    def reports(self) -> list[dict[str, Any]]:
        return self.broadcast_command("report", timeout=60)

    def wait_online(self, expected: int, timeout: float = 120) -> int:
        from devices.models import Device

        deadline = time.monotonic() + timeout
        online = 0
        while time.monotonic() < deadline:
            online = Device.objects.filter(node__isnull=False).count()
            if online >= expected:
                break
            time.sleep(0.2)
        return online

    def wait_offline(self, timeout: float = 60) -> int:
        from devices.models import Device

        deadline = time.monotonic() + timeout
        online = -1
        while time.monotonic() < deadline:
            online = Device.objects.filter(node__isnull=False).count()
            if online == 0:
                break
            time.sleep(0.2)
        return online

    def start_profile(self, name: str, seconds: int = 15) -> subprocess.Popen:
        """py-spy on the first server for the next `seconds` (raw stacks)."""
        out = ROOT / "bench" / "results" / f"profile-{name}-{int(time.time())}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(self.server_pids()[0]),
                "--duration",
                str(seconds),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)  # let py-spy attach before the work starts
        return process

    # Measurements -----------------------------------------------------------

    def server_pids(self) -> list[int]:
        return [p.pid for _, p in self.servers]

    def server_rss(self) -> int:
        return sum(psutil.Process(pid).memory_info().rss for pid in self.server_pids())

    def cpu_seconds(self) -> dict[str, float]:
        def total(pid: int) -> float:
            times = psutil.Process(pid).cpu_times()
            return times.user + times.system

        info = self.redis.info("cpu")
        clients = sum(total(c.pid) for c in self.clients)
        sockets = sum(total(pid) for pid in self.server_pids())
        http = 0.0
        if self.http is not None:
            master = psutil.Process(self.http.pid)
            http = total(master.pid) + sum(
                total(child.pid) for child in master.children()
            )
        return {
            "server": sockets + http,
            "sockets": sockets,
            "http": http,
            "client": clients,
            "redis": info["used_cpu_sys"] + info["used_cpu_user"],
        }

    # The server API -----------------------------------------------------------

    def api_key(self) -> str:
        if not getattr(self, "_api_key", None):
            from devices.integrations.apikeys import api_key_create

            created = api_key_create(app=self.app, name="bench", scopes=["push:send"])
            self._api_key = created.key
        return self._api_key

    def http_servers(self) -> list[str]:
        """Where the admin and the API are served (host:port): gunicorn."""
        return [f"127.0.0.1:{self.http_port}"]

    def register_through_api(self, count: int) -> list[str]:
        """Register `count` devices as the SDKs do; returns their tokens."""
        requests = [
            {
                "path": "/api/v1/devices/register",
                "body": {"client_key": self.app.client_key, "platform": "android"},
            }
            for _ in range(count)
        ]
        report = self.http_load(requests, rate=0, connections=32)
        tokens = [
            r["answer"]["token"] for r in report["results"] if r.get("status") == 201
        ]
        if len(tokens) != count:
            raise RuntimeError(f"registered {len(tokens)} of {count} devices")
        return tokens

    def online_device_ids(self) -> list[str]:
        from devices.models import Device

        ids = Device.objects.filter(node__isnull=False).values_list("pk", flat=True)
        return [str(pk) for pk in ids]

    def http_load(
        self, requests: list[dict[str, Any]], *, rate: float, connections: int
    ) -> dict[str, Any]:
        """Run bench.httpload against every server; returns its report."""
        plan = {
            "servers": self.http_servers(),
            "key": self.api_key(),
            "rate": rate,
            "connections": connections,
            "requests": requests,
        }
        plan_file = self.tmp / f"http-plan-{time.time()}.json"
        plan_file.write_text(json.dumps(plan))
        out = subprocess.run(
            [sys.executable, "-m", "bench.httpload", str(plan_file)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        report = json.loads(out.stdout)
        failed = [
            r for r in report["results"] if r.get("status") not in (200, 201, 202)
        ]
        if failed:
            print(f"{len(failed)} requests failed, e.g. {failed[0]}", file=sys.stderr)
        return report

    def rtts(self) -> list[float]:
        return [
            t for answer in self.broadcast_command("rtt", 30) for t in answer["rtts"]
        ]

    def redis_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])


def seed(count: int) -> tuple[Any, list[str]]:
    """An app and `count` devices, inserted in bulk; returns their tokens."""
    from devices.registry import services as registry

    app = registry.app_create(name="Bench")
    return app, seed_devices(app, count)


def seed_devices(app: Any, count: int) -> list[str]:
    """`count` more devices of the app, by COPY; returns their tokens."""
    import uuid

    from django.db import connection
    from django.utils import timezone

    from devices.registry.tokens import hash_token, new_device_token, token_prefix

    tokens = [new_device_token() for _ in range(count)]
    now = timezone.now()
    columns = (
        "id, app_id, token_hash, token_prefix, platform, alias, locale, timezone, "
        "app_version, attributes, is_active, created_at, last_seq, acked_seq"
    )
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor: COPY without the ORM
        for start in range(0, count, 100_000):
            with raw.copy(f"COPY devices_device ({columns}) FROM STDIN") as copy:
                for token in tokens[start : start + 100_000]:
                    copy.write_row(
                        (
                            uuid.uuid4(),
                            app.pk,
                            hash_token(token),
                            token_prefix(token),
                            "android",
                            "",
                            "",
                            "",
                            "",
                            "{}",
                            True,
                            now,
                            0,
                            0,
                        )
                    )
    return tokens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port}")
