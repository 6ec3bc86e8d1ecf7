import os
import shutil
import subprocess

import pytest

from tests.e2e.conftest import redis_url  # noqa: F401 - the shared fixture
from tests.e2e.servers import ROOT, daphne_servers

SDK_JS = ROOT / "sdk" / "js"
# Short heartbeats so that the SDKs' pings are seen within a test.
SERVER_ENV = {"KPNS_HEARTBEAT_SECONDS": "2"}


@pytest.fixture
def redis_layer(settings, redis_url):  # noqa: F811
    """This process's wake-ups (pushes, revocations) reach the servers' nodes."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 10}]},
        }
    }


@pytest.fixture
def sdk_server(redis_url, tmp_path):  # noqa: F811
    with daphne_servers(
        1, redis_url=redis_url, tmp_path=tmp_path, extra_env=SERVER_ENV
    ) as servers:
        yield servers[0]


@pytest.fixture(scope="session")
def node_modules():
    """Node and the JS test dependencies (`npm ci` from the lockfile if missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("the JavaScript SDK tests need Node.js 20+ and npm on PATH")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"the JavaScript SDK tests need Node.js 20+, found {version}")
    if not (SDK_JS / "node_modules" / "ws").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=SDK_JS,
            check=True,
            timeout=300,
            env={**os.environ, "npm_config_update_notifier": "false"},
        )
    return node
