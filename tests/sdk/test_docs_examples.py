"""The examples of docs/clients.md run as written against a real server."""

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from devices.delivery.pushes import push_to_devices
from devices.models import Device
from tests.e2e.servers import ROOT
from tests.factories import make_app
from tests.sdk.conftest import SDK_JS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DOC = ROOT / "docs" / "clients.md"


def example(name: str) -> str:
    """The fenced block right after `<!-- example: NAME -->` in the doc."""
    match = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)\n```",
        DOC.read_text(),
        re.DOTALL,
    )
    assert match, f"no example {name} in {DOC}"
    return match.group(1) + "\n"


def wait_output(log, process, text, timeout=20.0):
    """The output once a whole line holding `text` was printed (an unbuffered
    print() writes its arguments one by one: half a line was seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        at = output.find(text)
        if at >= 0 and "\n" in output[at:]:
            return output
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not printed; output:\n{log.read_text()}")


def run_example(command, cwd, server, app, log):
    env = {
        **os.environ,
        "KPNS_SERVER": server.http_url,
        "KPNS_CLIENT_KEY": app.client_key,
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        wait_output(log, process, "connected")
        device = Device.objects.filter(app=app).latest("created_at")
        push_to_devices(
            app=app, device_ids=[device.pk], title="From the docs", data={"n": 1}
        )
        output = wait_output(log, process, "push #1: From the docs")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return output, device


def test_node_example(node_modules, sdk_server, redis_layer, tmp_path):
    app = make_app()
    # As the doc says: fetch kpns.js from the server, install ws.
    (tmp_path / "kpns.js").write_bytes(
        httpx.get(f"{sdk_server.http_url}/static/kpns/kpns.js", timeout=10).content
    )
    (tmp_path / "node_modules").symlink_to(SDK_JS / "node_modules")
    (tmp_path / "listen.mjs").write_text(example("listen.mjs"))
    output, device = run_example(
        [node_modules, "listen.mjs"], tmp_path, sdk_server, app, tmp_path / "out"
    )
    assert "push #1: From the docs { n: 1 }" in output
    assert device.platform == "desktop"


def test_python_example(sdk_server, redis_layer, tmp_path):
    app = make_app()
    (tmp_path / "listen.py").write_text(example("listen.py"))
    output, device = run_example(
        [sys.executable, "listen.py"], tmp_path, sdk_server, app, tmp_path / "out"
    )
    assert "push #1: From the docs {'n': 1}" in output
    assert (tmp_path / "device.json").exists()
    assert str(device.pk) in (tmp_path / "device.json").read_text()
