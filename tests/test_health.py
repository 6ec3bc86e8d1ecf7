"""/healthz is liveness: it answers while PostgreSQL and Redis are down."""

import os

import pytest

BROKEN_LAYER = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Nothing listens on port 1: connection refused at once.
        "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0"}]},
    }
}


def test_healthz_answers_without_touching_the_database_or_the_layer(client, settings):
    """No django_db mark: any database query here would fail the test."""
    settings.CHANNEL_LAYERS = BROKEN_LAYER
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["pid"] == os.getpid()
    assert "checks" not in body


@pytest.mark.django_db
def test_readyz_reports_database_and_channel_layer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["channel_layer"]["ok"] is True
