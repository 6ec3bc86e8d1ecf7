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

import pytest

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


def test_django_security_middleware_checks_are_on(settings):
    """Django's own middleware by its own path: its deploy checks
    (security.W001-W003) are not silenced and warn when one is gone."""
    from django.core import checks

    def ids():
        found = checks.run_checks(include_deployment_checks=True)
        wanted = {"security.W001", "security.W002", "security.W003"}
        return sorted(e.id for e in found if e.id in wanted)

    assert ids() == []
    settings.MIDDLEWARE = [
        path
        for path in settings.MIDDLEWARE
        if "Csrf" not in path and "XFrame" not in path and "Security" not in path
    ]
    assert ids() == ["security.W001", "security.W002", "security.W003"]


@pytest.mark.django_db
def test_api_requests_skip_the_session_and_pages_keep_their_headers(client):
    api = client.get("/api/v1/device", HTTP_AUTHORIZATION="Device nope")
    assert api.status_code == 401
    assert "Cookie" not in api.headers.get("Vary", "")
    assert "sessionid" not in api.cookies and "csrftoken" not in api.cookies
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "csrftoken" in page.cookies
