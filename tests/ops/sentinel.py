"""A private Redis master, one replica and one Sentinel, on free loopback
ports under a temporary directory (never the shared Redis on 6379). Every
wait is bounded; every process is killed in ``finally``."""

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.e2e.servers import free_port

MASTER_NAME = "mymaster"


def _wait(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {timeout} s")


class SentinelSet:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports = {"a": free_port(), "b": free_port()}
        self.sentinel_port = free_port()
        self.processes: list[subprocess.Popen] = []

    def _redis(self, name: str, *extra: str) -> None:
        port = self.ports[name]
        data = self.directory / name
        data.mkdir()
        self.processes.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(data),
                    "--logfile",
                    str(data / "redis.log"),
                    *extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait(lambda: self.client(port).ping(), 10, f"redis {name}")

    def start(self) -> None:
        self._redis("a")
        self._redis("b", "--replicaof", "127.0.0.1", str(self.ports["a"]))
        _wait(
            lambda: (
                self.client(self.ports["b"]).info("replication")["master_link_status"]
                == "up"
            ),
            15,
            "replication",
        )
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.directory}\n"
            f"logfile {self.directory / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['a']} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.processes.append(
            subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait(lambda: self.master_port() == self.ports["a"], 10, "sentinel")
        # The sentinel must know the replica before it can fail over to it.
        _wait(
            lambda: len(self.sentinel().sentinel_slaves(MASTER_NAME)) == 1,
            20,
            "sentinel sees the replica",
        )

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)

    def sentinel(self) -> redis.Redis:
        return self.client(self.sentinel_port)

    def master_port(self) -> int:
        _host, port = self.sentinel().sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def failover(self) -> None:
        self.sentinel().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

    def kill_master(self) -> None:
        """SIGKILL the current master (Sentinel notices after 1 s)."""
        port = self.master_port()
        index = list(self.ports.values()).index(port)
        self.processes[index].kill()
        self.processes[index].wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.wait(timeout=10)

    @property
    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": "",
            "REDIS_SENTINELS": f"127.0.0.1:{self.sentinel_port}",
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def layer_host(self) -> dict:
        return {
            "sentinels": [("127.0.0.1", self.sentinel_port)],
            "master_name": MASTER_NAME,
            "sentinel_kwargs": {"socket_timeout": 2, "socket_connect_timeout": 2},
            "socket_timeout": 10,
            "socket_connect_timeout": 3,
        }


@contextlib.contextmanager
def sentinel_set() -> Iterator[SentinelSet]:
    directory = Path(tempfile.mkdtemp(prefix="kpns-sentinel-"))
    instance = SentinelSet(directory)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(directory, ignore_errors=True)
