"""The JavaScript SDK's own tests (sdk/js/test/, Node's test runner) against a
real Daphne: this test starts the server, a control endpoint for pushes, and
runs `node --test`, asserting its exit code."""

import json
import os
import subprocess

import pytest

from tests.e2e.servers import ROOT
from tests.factories import make_app
from tests.sdk.conftest import SDK_JS
from tests.sdk.control import control_server
from tests.sdk.vectors import vectors

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.mark.timeout(400)
def test_javascript_sdk_node_tests(node_modules, sdk_server, redis_layer, tmp_path):
    app = make_app(name="JS SDK")
    vectors_file = tmp_path / "vectors.json"
    vectors_file.write_text(json.dumps(vectors()))
    with control_server() as control:
        env = {
            **os.environ,
            "KPNS_SERVER": sdk_server.http_url,
            "KPNS_CLIENT_KEY": app.client_key,
            "KPNS_CONTROL": control,
            "KPNS_VECTORS": str(vectors_file),
        }
        result = subprocess.run(
            [node_modules, "--test", "--test-reporter=spec", "test/"],
            cwd=SDK_JS,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    report = result.stdout + result.stderr
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "js-sdk-node-tests.txt").write_text(report)
    print(report[-3000:])
    assert result.returncode == 0, report[-8000:] + sdk_server.output()[-3000:]
    assert "# fail 0" in report or "ℹ fail 0" in report
