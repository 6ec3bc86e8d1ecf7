"""Idempotency-Key: a retried create or send runs once and replays its answer."""

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from campaigns.models import Campaign
from devices.integrations import idempotency
from devices.models import Delivery, IdempotencyRecord, Message
from tests.api.conftest import ApiClient
from tests.factories import make_api_key, make_device

PUSH = {"aliases": ["user-1"], "title": "Once"}


@pytest.mark.django_db
def test_same_key_twice_sends_once_and_replays_the_first_response(api, app):
    make_device(app, alias="user-1")
    first = api.post("/api/v1/pushes", PUSH, idempotency_key="order-1-shipped")
    second = api.post("/api/v1/pushes", PUSH, idempotency_key="order-1-shipped")
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Message.objects.count() == 1 and Delivery.objects.count() == 1
    # Key order in the JSON does not matter; a new key is a new push.
    reordered = {"title": "Once", "aliases": ["user-1"]}
    assert api.post("/api/v1/pushes", reordered, idempotency_key="order-1-shipped")[
        "Idempotent-Replayed"
    ]
    api.post("/api/v1/pushes", PUSH, idempotency_key="order-2-shipped")
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_422(api, app):
    api.post("/api/v1/pushes", PUSH, idempotency_key="k1")
    response = api.post(
        "/api/v1/pushes", {**PUSH, "title": "Different"}, idempotency_key="k1"
    )
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    # ... and on another endpoint too.
    other = api.post(
        "/api/v1/campaigns", {"name": "x", "title": "x"}, idempotency_key="k1"
    )
    assert other.status_code == 422
    assert Message.objects.count() == 1 and not Campaign.objects.exists()


@pytest.mark.django_db
def test_keys_belong_to_one_api_key(app):
    make_device(app, alias="user-1")
    one = ApiClient(make_api_key(app)[1])
    two = ApiClient(make_api_key(app)[1])
    one.post("/api/v1/pushes", PUSH, idempotency_key="same")
    assert "Idempotent-Replayed" not in two.post(
        "/api/v1/pushes", PUSH, idempotency_key="same"
    )
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_a_rejected_request_is_replayed_as_rejected(api):
    bad = {"aliases": ["u"], "title": ""}
    first = api.post("/api/v1/pushes", bad, idempotency_key="bad-1")
    second = api.post("/api/v1/pushes", bad, idempotency_key="bad-1")
    assert first.status_code == second.status_code == 400
    assert second["Content-Type"] == "application/problem+json"
    assert first.json() == second.json()


@pytest.mark.django_db
def test_a_409_is_not_stored_so_a_retry_can_succeed(api, app):
    campaign = api.post("/api/v1/campaigns", {"name": "c", "title": "t"}).json()
    path = f"/api/v1/campaigns/{campaign['id']}/send"
    Campaign.objects.filter(pk=campaign["id"]).update(status="cancelled")
    assert api.post(path, idempotency_key="send-1").status_code == 409
    Campaign.objects.filter(pk=campaign["id"]).update(status="draft")
    assert api.post(path, idempotency_key="send-1").status_code == 200


@pytest.mark.django_db
def test_every_create_and_send_honours_the_key(api, app):
    campaign = api.post("/api/v1/campaigns", {"name": "c", "title": "t"}).json()
    requests = [
        ("/api/v1/devices", {"platform": "web"}),
        ("/api/v1/pushes/batch", {"messages": [PUSH]}),
        ("/api/v1/campaigns", {"name": "d", "title": "t"}),
        (f"/api/v1/campaigns/{campaign['id']}/send", {}),
        (
            "/api/v1/webhooks",
            {"url": "https://example.com/h", "events": ["message.opened"]},
        ),
    ]
    for path, body in requests:
        first = api.post(path, body, idempotency_key=f"k-{path}")
        again = api.post(path, body, idempotency_key=f"k-{path}")
        assert first.status_code < 300, (path, first.content)
        assert again["Idempotent-Replayed"] == "true", path
        assert again.json() == first.json(), path


@pytest.mark.django_db
def test_keys_expire_after_24_hours_and_are_pruned(api, app):
    make_device(app, alias="user-1")
    api.post("/api/v1/pushes", PUSH, idempotency_key="old")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = api.post("/api/v1/pushes", PUSH, idempotency_key="old")
    assert "Idempotent-Replayed" not in again
    assert Message.objects.count() == 2
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    api.post("/api/v1/pushes", PUSH, idempotency_key="new")
    assert idempotency.records_prune() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.django_db
def test_bad_keys_are_400(api):
    response = api.post("/api/v1/pushes", PUSH, idempotency_key="x" * 300)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_send_once(app):
    """Eight threads, one key, one moment: one message, eight equal answers."""
    make_device(app, alias="user-1")
    _, key = make_api_key(app)
    barrier = threading.Barrier(8)
    responses = []

    def send() -> None:
        client = ApiClient(key)
        barrier.wait()
        try:
            responses.append(
                client.post("/api/v1/pushes", PUSH, idempotency_key="race-1")
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [r.status_code for r in responses] == [202] * 8
    assert len({r.content for r in responses}) == 1
    assert sum("Idempotent-Replayed" in r for r in responses) == 7
    assert Message.objects.count() == 1
    assert Delivery.objects.count() == 1
