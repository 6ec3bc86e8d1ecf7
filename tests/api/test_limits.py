"""Documented limits: rate per key and per registration (429), body size
(413), batch and tags (400)."""

import logging
import threading
import time
import uuid

import pytest
import redis
from django.test import Client

from devices.api import throttling
from devices.models import Device, Message
from tests.api.conftest import ApiClient
from tests.e2e.conftest import redis_url  # noqa: F401  (the shared fixture)
from tests.factories import make_api_key, make_app

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


# Device registration -------------------------------------------------------------


def register(app, address="198.51.100.7", client_key=None):
    return Client().post(
        "/api/v1/devices/register",
        {"client_key": client_key or app.client_key, "platform": "web"},
        content_type="application/json",
        REMOTE_ADDR=address,
    )


@pytest.fixture
def register_limits(settings):
    def limits(per_key=0, per_address=0):
        settings.KPNS = {
            **settings.KPNS,
            "REGISTER_RATE_PER_MINUTE": per_key,
            "REGISTER_ADDRESS_RATE_PER_MINUTE": per_address,
        }

    return limits


def test_registration_is_limited_per_source_address(app, register_limits):
    register_limits(per_address=3)
    assert [register(app).status_code for _ in range(3)] == [201] * 3
    limited = register(app)
    assert limited.status_code == 429
    assert limited["Content-Type"] == "application/problem+json"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited.json()["status"] == 429
    assert Device.objects.count() == 3  # nothing registered past the limit
    assert register(app, address="198.51.100.8").status_code == 201


def test_an_ipv6_client_is_counted_by_its_64(app, register_limits):
    register_limits(per_address=2)
    assert register(app, address="2001:db8:1:2::1").status_code == 201
    assert register(app, address="2001:db8:1:2::ffff").status_code == 201
    assert register(app, address="2001:db8:1:2:aaaa::9").status_code == 429
    assert register(app, address="2001:db8:1:3::1").status_code == 201


def test_registration_is_limited_per_client_key(app, register_limits):
    register_limits(per_key=2)
    other = make_app(name="Other")
    codes = [register(app, address=f"198.51.100.{n}").status_code for n in range(3)]
    assert codes == [201, 201, 429]
    assert register(other, address="198.51.100.50").status_code == 201
    # Unknown keys are counted too (and then refused as usual). A key of
    # this test's own: the window is shared with other tests and runs.
    unknown = f"ck_nope_{uuid.uuid4().hex}"
    for _ in range(2):
        assert register(app, client_key=unknown).status_code == 400
    assert register(app, client_key=unknown).status_code == 429


# The limiter's backend ----------------------------------------------------------


@pytest.fixture
def fresh_limiter(monkeypatch):
    """A limiter that has never seen Redis fail, with its own fallback counts."""
    monkeypatch.setattr(throttling, "_redis", throttling._RedisCounters())
    throttling._fallback.clear()


def unchecked(limit):
    return throttling.UNCHECKED.labels(limit=limit)._value.get()


def test_a_failing_redis_allows_counts_per_process_logs_and_counts_it(
    app, settings, register_limits, fresh_limiter, caplog
):
    """The chosen policy: allow, but never silently and never unlimited."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # connection refused
    register_limits(per_address=2)
    before = unchecked("register_address")
    with caplog.at_level(logging.WARNING, logger="devices.api.throttling"):
        codes = [register(app).status_code for _ in range(3)]
    assert codes == [201, 201, 429]  # the limit still holds in this process
    assert unchecked("register_address") == before + 3
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1  # one line, not one per request


def test_a_redis_that_stops_answering_costs_one_timeout_not_one_per_request(
    app, settings, register_limits, fresh_limiter
):
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        settings.REDIS_URL = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        register_limits(per_address=100)
        started = time.monotonic()
        assert [register(app).status_code for _ in range(5)] == [201] * 5
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert elapsed < 5 * throttling.SOCKET_TIMEOUT + 2


def test_redis_counts_are_atomic_and_expire(settings, redis_url, fresh_limiter):  # noqa: F811
    settings.REDIS_URL = redis_url
    key = f"test:{threading.get_ident()}:{id(settings)}"
    results: list[int] = []

    def hit():
        for _ in range(10):
            results.append(throttling._count(key, "test"))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == list(range(1, 81))  # no count lost or repeated
    client = redis.Redis.from_url(redis_url)
    try:
        assert int(client.get(f"kpns:{key}")) == 80
        assert 0 < client.ttl(f"kpns:{key}") <= 2 * throttling.WINDOW_SECONDS
        client.delete(f"kpns:{key}")
    finally:
        client.close()


def test_api_key_requests_are_claimed_in_blocks_never_past_the_limit(monkeypatch):
    """1% of the limit per round trip to the shared counter; exactly the
    limit granted in a window, then the wait until the window ends."""
    claims = []
    count = throttling._count

    def counted(key, limit_name, by=1):
        claims.append(by)
        return count(key, limit_name, by)

    monkeypatch.setattr(throttling, "_count", counted)
    for _attempt in range(2):  # again if a minute's window ended meanwhile
        claims.clear()
        window = int(time.time() // 60)
        key = f"test-blocks-{uuid.uuid4().hex}"
        granted = [throttling._over_in_blocks(key, 250, "api_key") for _ in range(260)]
        if int(time.time() // 60) == window:
            break
    allowed = [wait for wait in granted if wait is None]
    assert len(allowed) == 250
    assert all(wait is not None and 0 < wait <= 60 for wait in granted[250:])
    # 125 claims of 2 for the 250 requests, then one refused claim per request.
    assert claims == [2] * 135
