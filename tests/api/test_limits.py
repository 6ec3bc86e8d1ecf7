"""Documented limits: rate per key (429), body size (413), batch and tags (400)."""

import pytest

from devices.models import Message
from tests.api.conftest import ApiClient
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db


def test_rate_limit_per_key_is_429_problem_with_retry_after(app, settings):
    settings.KPNS = {**settings.KPNS, "API_RATE_PER_MINUTE": 3}
    one = ApiClient(make_api_key(app)[1])
    two = ApiClient(make_api_key(app)[1])
    assert [one.get("/api/v1/presence").status_code for _ in range(3)] == [200] * 3
    limited = one.get("/api/v1/presence")
    assert limited.status_code == 429
    assert limited["Content-Type"] == "application/problem+json"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited.json()["status"] == 429
    # Sends are limited too, and nothing is sent past the limit.
    assert (
        one.post("/api/v1/pushes", {"aliases": ["a"], "title": "x"}).status_code == 429
    )
    assert not Message.objects.exists()
    # The limit is per key.
    assert two.get("/api/v1/presence").status_code == 200


def test_request_bodies_over_the_limit_are_413_problem(api, settings):
    settings.KPNS_MAX_REQUEST_BODY_BYTES = 2000
    big = {"aliases": ["a"], "title": "x", "body": "y" * 3000}
    response = api.post("/api/v1/pushes", big)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert "2000 bytes" in response.json()["detail"]
    batch = api.post("/api/v1/pushes/batch", {"messages": [big]})
    assert batch.status_code == 413
    assert not Message.objects.exists()


def test_device_sdk_register_also_answers_413_json(client, app, settings):
    settings.KPNS_MAX_REQUEST_BODY_BYTES = 500
    response = client.post(
        "/api/v1/devices/register",
        {"client_key": app.client_key, "alias": "a" * 600},
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"


def test_tag_count_is_limited_to_50(api):
    response = api.post(
        "/api/v1/devices", {"platform": "web", "tags": [f"t{i}" for i in range(51)]}
    )
    assert response.status_code == 400
    assert "tags" in response.json()["errors"]
    ok = api.post(
        "/api/v1/devices", {"platform": "web", "tags": [f"t{i}" for i in range(50)]}
    )
    assert ok.status_code == 201
