"""`manage.py check --deploy` passes with the production settings.

Production means DEBUG=false, a real SECRET_KEY and ALLOWED_HOSTS
(docs/operations.md); kpns_site/settings.py then turns on HSTS, secure
cookies, the SSL redirect and the proxy header. No security.* warning may
appear; other apps' warnings (e.g. drf_spectacular schema hints) are not
deployment issues.
"""

import os
import secrets
import subprocess
import sys

from tests.e2e.servers import ROOT


def test_check_deploy_passes_with_production_settings():
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "push.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://push.example.com",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "security." not in output, output
