"""Device registration and self-update over HTTP."""

import pytest

from devices.models import Device
from devices.registry.tokens import hash_token
from tests.factories import make_device

pytestmark = pytest.mark.django_db


def test_register_returns_id_and_token_shown_once_and_stored_hashed(client, app):
    response = client.post(
        "/api/v1/devices/register",
        {
            "client_key": app.client_key,
            "platform": "ios",
            "alias": "user-42",
            "tags": ["vip", "beta"],
            "timezone": "Europe/Paris",
            "attributes": {"plan": "pro"},
        },
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    device = Device.objects.get(pk=body["id"])
    assert body["tags"] == ["beta", "vip"]
    assert device.token_hash == hash_token(body["token"])
    assert body["token"] not in str(Device.objects.values_list().get(pk=device.pk))
    again = client.get("/api/v1/device", HTTP_AUTHORIZATION=f"Device {body['token']}")
    assert "token" not in again.json()


def test_unknown_client_key_is_a_problem_json_400(client, app):
    response = client.post(
        "/api/v1/devices/register",
        {"client_key": "ck_nope"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"]["client_key"] == ["Unknown client key."]


def test_bad_fields_are_named(client, app):
    response = client.post(
        "/api/v1/devices/register",
        {
            "client_key": app.client_key,
            "platform": "toaster",
            "timezone": "Mars/Olympus",
            "tags": ["ok", "not ok!"],
        },
        content_type="application/json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "platform" in errors
    response = client.post(
        "/api/v1/devices/register",
        {"client_key": app.client_key, "timezone": "Mars/Olympus", "tags": ["not ok!"]},
        content_type="application/json",
    )
    errors = response.json()["errors"]
    assert set(errors) == {"timezone", "tags"}


def test_device_updates_its_own_tags_and_timezone(client, app):
    device, token = make_device(app, tags=["a"])
    response = client.patch(
        "/api/v1/device",
        {"tags": ["b", "c"], "timezone": "Asia/Tokyo", "locale": "ja"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token}",
    )
    assert response.status_code == 200, response.content
    assert response.json()["tags"] == ["b", "c"]
    device.refresh_from_db()
    assert (device.timezone, device.locale) == ("Asia/Tokyo", "ja")


def test_wrong_or_revoked_token_is_401(client, app):
    device, token = make_device(app)
    assert (
        client.get("/api/v1/device", HTTP_AUTHORIZATION="Device nope").status_code
        == 401
    )
    Device.objects.filter(pk=device.pk).update(is_active=False)
    response = client.get("/api/v1/device", HTTP_AUTHORIZATION=f"Device {token}")
    assert response.status_code == 401
    assert response.json()["title"] == "Unauthorized"


def test_malformed_json_is_400_problem(client, app):
    response = client.post(
        "/api/v1/devices/register", "{nope", content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
