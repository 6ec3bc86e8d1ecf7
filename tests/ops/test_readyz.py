"""/readyz: database, channel layer and migrations; 503 problem JSON if not."""

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
