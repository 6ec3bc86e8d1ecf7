"""Real Daphne processes for end-to-end tests (after daphne/testing.py)."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The URL of the test database pytest-django created, for child processes."""
    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or ""
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{conf['PORT']}" if conf.get("PORT") else ""
    return f"postgres://{auth}{conf['HOST'] or '127.0.0.1'}{port}/{conf['NAME']}"


class ServerProcess:
    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        self.port = port
        self.process = process
        self.log = log

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1/device/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for_port(
    port: int, process: subprocess.Popen, log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited early:\n{log.read_text(errors='replace')}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(
        f"server did not listen on {port}:\n{log.read_text(errors='replace')}"
    )


def child_env(
    redis_url: str, extra_env: dict[str, str] | None = None
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "kpns_site.settings",
        "KPNS_SWEEP_SECONDS": "0.5",
        "KPNS_NODE_HEARTBEAT_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaped."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def scheduler_process(
    *, redis_url: str, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    log = tmp_path / "scheduler.log"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "kpns_scheduler", "--poll", "0.2"],
        cwd=ROOT,
        env=child_env(redis_url, extra_env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        stop_process(process)


@contextmanager
def daphne_servers(
    count: int,
    *,
    redis_url: str,
    tmp_path: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[list[ServerProcess]]:
    env = child_env(redis_url, extra_env)
    servers: list[ServerProcess] = []
    try:
        for index in range(count):
            port = free_port()
            log = tmp_path / f"daphne-{index}.log"
            process = subprocess.Popen(
                [sys.executable, "manage.py", "kpns_serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
            servers.append(ServerProcess(port, process, log))
        for server in servers:
            wait_for_port(server.port, server.process, server.log)
        yield servers
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.terminate()
        for server in servers:
            stop_process(server.process)
