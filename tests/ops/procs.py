"""Processes of the production layout for tests: Daphne with proxy headers on
a chosen port (so a restarted one comes back on the same port), schedulers,
nginx in front, a throw-away TLS certificate. Every wait is bounded; every
process is stopped in ``finally`` by the context managers that start them."""

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import ROOT, child_env, free_port, wait_for_port


class Proc:
    """One child process with its log file."""

    def __init__(self, name: str, process: subprocess.Popen, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class Server(Proc):
    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        super().__init__(f"daphne-{port}", process, log)
        self.port = port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1/device/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_server(
    port: int,
    *,
    redis_url: str,
    tmp_path: Path,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("--proxy-headers",),
    tag: str = "",
) -> Server:
    log = tmp_path / f"daphne-{port}{tag}.log"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "kpns_serve", "--port", str(port), *args],
        cwd=ROOT,
        env=child_env(redis_url, extra_env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    server = Server(port, process, log)
    try:
        wait_for_port(port, process, log)
    except BaseException:
        server.stop()
        raise
    return server


class HttpServer(Proc):
    """gunicorn serving kpns_site.wsgi, configured by deploy/gunicorn.conf.py."""

    def __init__(
        self, port: int, process: subprocess.Popen, log: Path, ready_dir: Path
    ) -> None:
        super().__init__(f"http-{port}", process, log)
        self.port = port
        self.ready_dir = ready_dir

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reload_workers(self, timeout: float = 60) -> None:
        """What deploy/kpnsctl roll does: as many new workers as there are
        (TTIN), which load the code anew; once each has marked itself
        loaded (deploy/gunicorn.conf.py), the old ones go (TTOU, oldest
        first, each after its requests)."""
        old = set(self.workers())
        ready = Path(self.ready_dir)
        for _ in old:
            self.signal(signal.SIGTTIN)
            time.sleep(0.05)  # the master handles one signal per wake-up
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            marked = {int(p.name) for p in ready.iterdir()} if ready.exists() else set()
            if len(marked - old) >= len(old):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("new gunicorn workers not ready")
        for _ in old:
            self.signal(signal.SIGTTOU)
            time.sleep(0.05)

    def workers(self) -> list[int]:
        """Pids of its worker processes (children of the master)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.pid:  # field 4 of stat: the parent pid
                children.append(int(stat.parent.name))
        return children


def start_http(
    port: int,
    *,
    redis_url: str,
    tmp_path: Path,
    workers: int = 2,
    extra_env: dict[str, str] | None = None,
) -> HttpServer:
    log = tmp_path / f"http-{port}.log"
    ready_dir = tmp_path / f"http-{port}-ready"
    env = {
        "KPNS_BIND": "127.0.0.1",
        "KPNS_HTTP_PORT": str(port),
        "KPNS_HTTP_WORKERS": str(workers),
        "KPNS_HTTP_READY_DIR": str(ready_dir),
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "deploy/gunicorn.conf.py",
            "kpns_site.wsgi:application",
        ],
        cwd=ROOT,
        env=child_env(redis_url, env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    server = HttpServer(port, process, log, ready_dir)
    try:
        wait_for_port(port, process, log)
    except BaseException:
        server.stop()
        raise
    return server


def start_scheduler(
    *,
    redis_url: str,
    tmp_path: Path,
    extra_env: dict[str, str] | None = None,
    tag: str = "",
) -> Proc:
    log = tmp_path / f"scheduler{tag}.log"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "kpns_scheduler", "--poll", "0.2"],
        cwd=ROOT,
        env=child_env(redis_url, extra_env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    return Proc(f"scheduler{tag}", process, log)


@contextlib.contextmanager
def stopping(procs: list[Proc]) -> Iterator[list[Proc]]:
    """Stop every process in the (growing) list on the way out."""
    try:
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.stop(timeout=15)


# nginx ---------------------------------------------------------------------

_nginx_checked: str | None = None


def nginx_binary() -> str:
    """nginx, installed from Debian's packages when missing (root), else skip."""
    global _nginx_checked
    if _nginx_checked:
        return _nginx_checked
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                ["apt-get", "update", "-qq"],
                env=env,
                timeout=300,
                check=False,
                capture_output=True,
            )
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "nginx"],
                env=env,
                timeout=300,
                check=False,
                capture_output=True,
            )
        found = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
    if found is None:
        pytest.skip("nginx is not installed and could not be (apt-get install nginx)")
    _nginx_checked = found
    return found


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def client_tls(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    return context


class Nginx(Proc):
    def __init__(
        self, process: subprocess.Popen, log: Path, prefix: Path, https: int, http: int
    ) -> None:
        super().__init__("nginx", process, log)
        self.prefix = prefix
        self.https_port = https
        self.http_port = http

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}/ws/v1/device/"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def nginx_in_front(
    ports: list[int], tmp_path: Path, *, http_ports: list[int] | None = None
) -> Iterator[Nginx]:
    """nginx on free loopback ports, rendered from deploy/nginx/kpns.conf:
    /ws/ to the Daphne processes on ``ports``, the rest to the HTTP server on
    ``http_ports`` (gunicorn; default: the Daphne processes)."""
    binary = nginx_binary()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    cert, key = make_certificate(prefix)
    https, http = free_port(), free_port()
    upstreams = [arg for port in ports for arg in ("--upstream", f"127.0.0.1:{port}")]
    upstreams += [
        arg
        for port in http_ports or []
        for arg in ("--http-upstream", f"127.0.0.1:{port}")
    ]
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "render_nginx.py"),
            *upstreams,
            "--http-listen",
            f"127.0.0.1:{http}",
            "--https-listen",
            f"127.0.0.1:{https}",
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--standalone",
            str(prefix),
        ],
        check=True,
        timeout=30,
        capture_output=True,
    )
    log = prefix / "stdout.log"
    process = subprocess.Popen(
        [
            binary,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-g",
            "daemon off;",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    proxy = Nginx(process, log, prefix, https, http)
    try:
        wait_for_port(https, process, log, timeout=15)
        yield proxy
    finally:
        proxy.stop(timeout=10)


def wait_port_free(port: int, timeout: float = 15) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} still answers")
