"""Private Redis and PostgreSQL instances, and two kinds of black hole.

``BlackholeProxy`` stops forwarding in userspace (its kernel still
acknowledges what the client sends); ``PacketBlackhole`` holds every packet
to and from one loopback port in the kernel's traffic control, which is
what a host that drops packets looks like to TCP (unacknowledged data, no
reply to a SYN).

Fault injection never touches the shared services on 6379/5432: each test
starts its own instance on a free port under a temporary directory, may kill
or stop it, and always removes it in ``finally``. Every wait is bounded.
"""

import contextlib
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.servers import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _wait(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {timeout} s")


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) empty: no persistence, so a restart loses all."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: self.client().ping(), 10, "private redis")

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def key_count(self) -> int:
        return int(self.client().dbsize())


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    directory = Path(tempfile.mkdtemp(prefix="kpns-redis-"))
    instance = PrivateRedis(directory)
    try:
        instance.start()
        yield instance
    finally:
        instance.kill()
        shutil.rmtree(directory, ignore_errors=True)


class PrivatePostgres:
    """A throw-away cluster owned by the `postgres` OS user (initdb refuses root)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/kpns"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(
            command,
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None:
        if os.geteuid() == 0:
            uid = pwd.getpwnam("postgres")
            os.chown(self.directory, uid.pw_uid, uid.pw_gid)
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        self.start()
        self._run(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "kpns"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "pg.log"),
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            "30",
            "stop",
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        import pytest

        pytest.skip(f"no PostgreSQL 15 binaries in {PG_BIN}")
    directory = Path(tempfile.mkdtemp(prefix="kpns-pg-"))
    instance = PrivatePostgres(directory)
    try:
        instance.init()
        yield instance
    finally:
        if instance.running():
            with contextlib.suppress(Exception):
                instance.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


class BlackholeProxy:
    """A TCP proxy that, once ``blackhole()`` is called, stops answering.

    Connections stay open and new ones are accepted, but no byte is
    forwarded either way: what a host that drops packets looks like to a
    client, without touching the network stack.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.black = threading.Event()
        self.stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> "BlackholeProxy":
        self._thread.start()
        return self

    def blackhole(self) -> None:
        self.black.set()

    def heal(self) -> None:
        self.black.clear()

    def close(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=5)
        for sock in list(self._pairs):
            with contextlib.suppress(OSError):
                sock.close()
        self._listener.close()

    def _serve(self) -> None:
        held: list[socket.socket] = []  # accepted while black: never served
        while not self.stopping.is_set():
            readable = [self._listener] + (
                [] if self.black.is_set() else list(self._pairs)
            )
            ready, _, _ = select.select(readable, [], [], 0.05)
            for sock in ready:
                if sock is self._listener:
                    try:
                        client, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    if self.black.is_set():
                        held.append(client)
                        continue
                    try:
                        upstream = socket.create_connection(
                            ("127.0.0.1", self.target_port), timeout=2
                        )
                    except OSError:
                        client.close()
                        continue
                    self._pairs[client] = upstream
                    self._pairs[upstream] = client
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                peer = self._pairs.get(sock)
                if not data or peer is None:
                    self._drop(sock)
                    continue
                with contextlib.suppress(OSError):
                    peer.sendall(data)
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()

    def _drop(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        if peer is not None:
            self._pairs.pop(peer, None)
            with contextlib.suppress(OSError):
                peer.close()
        with contextlib.suppress(OSError):
            sock.close()


class PacketBlackhole:
    """Hold every packet to and from one loopback port (root and ``tc``).

    An HTB root qdisc on ``lo`` sends everything through a 100 Gbit/s class,
    except packets to or from ``port``, which a u32 filter puts in an 8 bit/s
    class: they wait there until ``heal()`` deletes the qdisc, and with it
    the queued packets (TCP retransmits). Nothing else is touched.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.active = False

    @staticmethod
    def _tc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tc", *args], capture_output=True, text=True, timeout=10, check=False
        )

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the kernel black hole cannot be used here, or None."""
        if os.geteuid() != 0:
            return "dropping packets on lo needs root"
        if shutil.which("tc") is None:
            return "no tc (iproute2) to drop packets with"
        probe = cls(free_port())
        try:
            probe.drop()
        except RuntimeError as exc:
            return f"the kernel refused the traffic-control black hole: {exc}"
        finally:
            probe.heal()
        return None

    def drop(self) -> None:
        shown = self._tc("qdisc", "show", "dev", "lo").stdout
        if "qdisc htb 1: root" in shown:  # left by a run that was killed
            self._tc("qdisc", "del", "dev", "lo", "root")
        self.active = True
        port = str(self.port)
        steps = [
            ("qdisc", "add", "dev", "lo", "root", "handle", "1:",
             "htb", "default", "1"),
            ("class", "add", "dev", "lo", "parent", "1:", "classid", "1:1",
             "htb", "rate", "100gbit"),
            ("class", "add", "dev", "lo", "parent", "1:", "classid", "1:2",
             "htb", "rate", "8bit", "ceil", "8bit", "burst", "1", "cburst", "1"),
            ("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip",
             "prio", "1", "u32", "match", "ip", "sport", port, "0xffff",
             "flowid", "1:2"),
            ("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip",
             "prio", "1", "u32", "match", "ip", "dport", port, "0xffff",
             "flowid", "1:2"),
        ]  # fmt: skip
        for step in steps:
            done = self._tc(*step)
            if done.returncode != 0:
                raise RuntimeError(f"tc {' '.join(step)}: {done.stderr.strip()}")

    def heal(self) -> None:
        if self.active:
            self._tc("qdisc", "del", "dev", "lo", "root")
            self.active = False


@contextlib.contextmanager
def packet_blackhole(port: int) -> Iterator[PacketBlackhole]:
    hole = PacketBlackhole(port)
    try:
        yield hole
    finally:
        hole.heal()
