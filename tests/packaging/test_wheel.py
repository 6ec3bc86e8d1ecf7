"""The built wheel serves on its own.

`python -m build` makes the sdist and, from it, the wheel. The wheel goes into
a new virtualenv with requirements/runtime.txt (the lock's versions and
hashes, no development dependencies) and nothing of the checkout: there it
migrates a new SQLite database, collects the static files and serves with
`kpns_serve`, with production settings (DEBUG off). /healthz, the SDK's
/static/kpns/kpns.js and /demo/ (a template of the top-level templates/)
answer 200.

The wheel must also hold every package, static file and template of the
source tree: a new subpackage left out of pyproject.toml's list fails here.
"""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Package directories of the source tree and where their files are in a wheel.
SOURCES = {
    "kpns_site": "kpns_site",
    "devices": "devices",
    "campaigns": "campaigns",
    "kpns_sdk": "kpns_sdk",
    "templates": "kpns_site/templates",
}
SKIP_PARTS = {"__pycache__"}

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]


def run(args, **kwargs):
    result = subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, **kwargs
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}:\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build from the checkout with the locked build backend (no isolation:
    no download of an unpinned setuptools)."""
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT])
    (built,) = dist.glob("kpns-*.whl")
    return built


def source_files():
    for source, target in SOURCES.items():
        for path in (ROOT / source).rglob("*"):
            relative = path.relative_to(ROOT / source)
            skipped = SKIP_PARTS & set(relative.parts) or path.suffix == ".pyc"
            if path.is_file() and not skipped:
                yield f"{target}/{relative.as_posix()}"


def test_wheel_holds_every_package_static_file_and_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(set(source_files()) - names)
    assert not missing, (
        "missing from the wheel (add the package to [tool.setuptools] packages "
        f"or its files to package-data in pyproject.toml): {missing}"
    )
    assert "devices/static/kpns/kpns.js" in names
    assert "kpns_site/templates/demo/index.html" in names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_wheel_installed_alone_migrates_and_serves(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet"]
    lock = ROOT / "requirements" / "runtime.txt"
    run([*pip, "--require-hashes", "--no-deps", "-r", lock])
    run([*pip, "--no-deps", wheel])

    # Nothing of the checkout or of this test run: its own settings, its own
    # SQLite file, the in-process channel layer, production mode.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KPNS_", "DJANGO_", "DATABASE_", "REDIS_", "PYTHON"))
        and key not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "VIRTUAL_ENV"}
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        DJANGO_SETTINGS_MODULE="kpns_site.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'kpns.sqlite3'}",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
    )
    where = run(
        [python, "-c", "import kpns_site; print(kpns_site.__file__)"],
        cwd=tmp_path,
        env=env,
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout

    admin = venv / "bin" / "django-admin"
    run([admin, "migrate", "--noinput"], cwd=tmp_path, env=env)
    run([admin, "collectstatic", "--noinput", "-v0"], cwd=tmp_path, env=env)
    run([admin, "kpns_demo"], cwd=tmp_path, env=env)

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [admin, "kpns_serve", "--port", str(port), "--drain-seconds", "0"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if get(f"{base}/healthz")[0] == 200:
                    break
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)

        status, body = get(f"{base}/static/kpns/kpns.js")
        assert status == 200, log.read_text()
        assert b"kpns" in body.lower()
        status, body = get(f"{base}/demo/")
        assert status == 200, body[:2000]
        assert b"/static/kpns/kpns.js" in body
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
