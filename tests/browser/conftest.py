"""Playwright on Debian's Chromium (never `playwright install`).

`make test` installs Chromium first (`make browser-deps`); if it is still
missing, the first browser test tries `apt-get install chromium` itself and
skips, saying why, only if that is impossible.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import redis_url  # noqa: F401 - the shared fixture
from tests.e2e.servers import ROOT

CHROMIUM = Path(os.environ.get("KPNS_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


def _install_chromium() -> str | None:
    """apt-get install chromium; the reason it failed, or None."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, cannot apt-get install (run `make browser-deps` as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "chromium"],
    ):
        try:
            subprocess.run(
                command, env=env, check=True, capture_output=True, timeout=600
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return f"{' '.join(command)} failed: {exc}"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        reason = _install_chromium()
        if reason is not None or not CHROMIUM.exists():
            message = f"browser tests need Chromium at {CHROMIUM}: {reason}"
            print(message)
            pytest.skip(message)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need the Python playwright package (pip '.[dev]')")
    return CHROMIUM


@pytest.fixture
def browser(chromium_path):
    # Per test: Playwright's sync API must not outlive into async tests' loops.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), args=LAUNCH_ARGS, timeout=60_000
        )
        yield browser
        browser.close()


@pytest.fixture
def orm():
    """Run ORM calls in a worker thread: Playwright's sync API keeps an event
    loop running in the test's thread, where Django refuses them."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    pool = ThreadPoolExecutor(max_workers=1)

    def call(function, *args, **kwargs):
        return pool.submit(function, *args, **kwargs).result(timeout=30)

    yield call
    pool.submit(connections.close_all).result(timeout=30)
    pool.shutdown()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
