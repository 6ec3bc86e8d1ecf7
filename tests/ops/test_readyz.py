"""/readyz: database, channel layer and migrations; 503 problem JSON if not."""

import time

import pytest

from kpns_site import health


@pytest.fixture(autouse=True)
def forget_migration_state():
    health._migrated = False
    yield
    health._migrated = False


@pytest.mark.django_db
def test_readyz_is_200_when_everything_is_there(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["migrations"] == {"ok": True, "unapplied": 0}


@pytest.mark.django_db
def test_readyz_is_503_problem_json_with_unapplied_migrations(client, monkeypatch):
    class Fake:
        app_label, name = "devices", "9999_not_yet"

    monkeypatch.setattr(
        health.MigrationExecutor,
        "migration_plan",
        lambda self, targets: [(Fake, False)],
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["status"] == 503 and "migrations" in body["detail"]
    assert body["checks"]["migrations"]["next"] == ["devices.9999_not_yet"]
    # /healthz (liveness) does not care about migrations.
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_readyz_is_503_when_the_channel_layer_is_down(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0"}]},
        }
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"]["ok"] is False


def test_a_server_without_postgresql_or_redis_is_alive_but_not_ready(tmp_path):
    """A real kpns_serve whose database and Redis refuse connections: a
    liveness probe must not restart it (200), readiness says why (503)."""
    import httpx

    from tests.e2e.servers import free_port
    from tests.ops.procs import start_server, stopping

    procs = []
    with stopping(procs):
        server = start_server(
            free_port(),
            redis_url="redis://127.0.0.1:1/0",
            tmp_path=tmp_path,
            extra_env={"DATABASE_URL": "postgres://kpns@127.0.0.1:1/unreachable"},
            args=(),
        )
        procs.append(server)
        with httpx.Client(base_url=server.http_url, timeout=10) as http:
            alive = http.get("/healthz")
            started = time.monotonic()
            ready = http.get("/readyz")
            waited = time.monotonic() - started
    assert alive.status_code == 200, server.output()
    assert alive.json()["status"] == "ok"
    assert ready.status_code == 503
    assert ready.headers["Content-Type"] == "application/problem+json"
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] is False
    assert checks["channel_layer"]["ok"] is False
    assert waited < 2 * health.CHECK_TIMEOUT + 1
