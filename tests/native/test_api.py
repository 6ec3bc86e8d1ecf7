"""The device's push-credential endpoints and the VAPID public key."""

import pytest
from django.test import Client

from devices.native.models import AppProviderConfig, PushCredential
from tests.factories import make_device
from tests.native.receivers import WebPushService

pytestmark = pytest.mark.django_db

P256DH = (
    "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0"
    "VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
)
AUTH = "tBHItJI5svbpez7KI4CCXg"


def call(method, path, token, body=None):
    extra = {"HTTP_AUTHORIZATION": f"Device {token}"}
    if body is not None:
        extra.update(data=body, content_type="application/json")
    return getattr(Client(), method)(path, **extra)


@pytest.fixture
def device(app):
    return make_device(app, platform="web")


def test_register_list_and_remove_a_web_push_subscription(device):
    _, token = device
    subscription = {
        "kind": "webpush",
        "endpoint": "http://127.0.0.1/push/abc",
        "expirationTime": None,
        "keys": {"p256dh": P256DH, "auth": AUTH},
    }
    answer = call("post", "/api/v1/device/push-credentials", token, subscription)
    assert answer.status_code == 201, answer.json()
    assert answer.json()["kind"] == "webpush" and answer.json()["is_active"]
    credential = PushCredential.objects.get(device=device[0])
    assert (credential.p256dh, credential.auth) == (P256DH, AUTH)
    listed = call("get", "/api/v1/device/push-credentials", token).json()
    assert [c["kind"] for c in listed] == ["webpush"]
    assert (
        call("delete", "/api/v1/device/push-credentials/webpush", token).status_code
        == 204
    )
    assert (
        call("delete", "/api/v1/device/push-credentials/webpush", token).status_code
        == 404
    )
    assert not PushCredential.objects.exists()


def test_a_new_token_replaces_the_old_one_of_its_kind(device):
    _, token = device
    for value in ("first-token", "second-token"):
        answer = call(
            "post",
            "/api/v1/device/push-credentials",
            token,
            {"kind": "fcm", "token": value},
        )
        assert answer.status_code == 201
    assert list(PushCredential.objects.values_list("token", flat=True)) == [
        "second-token"
    ]


def test_apns_token_with_environment(device):
    _, token = device
    body = {"kind": "apns", "token": "ab" * 32, "environment": "sandbox"}
    answer = call("post", "/api/v1/device/push-credentials", token, body)
    assert answer.status_code == 201
    assert answer.json()["environment"] == "sandbox"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "kind": "webpush",
                "endpoint": "https://10.0.0.1/x",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
            "endpoint",
        ),
        (
            {
                "kind": "webpush",
                "endpoint": "http://127.0.0.1/x",
                "keys": {"p256dh": "short", "auth": AUTH},
            },
            "keys",
        ),
        ({"kind": "apns", "token": "not-hex"}, "token"),
        ({"kind": "fcm"}, "token"),
        ({"kind": "fcm", "token": "t", "environment": "sandbox"}, "environment"),
        ({"kind": "fcm", "token": "t", "tokn": "x"}, "tokn"),
        ({"kind": "mqtt", "token": "t"}, "kind"),
    ],
)
def test_invalid_credentials_are_refused_naming_the_field(device, body, field):
    answer = call("post", "/api/v1/device/push-credentials", device[1], body)
    assert answer.status_code == 400
    assert field in answer.json()["errors"]
    assert not PushCredential.objects.exists()


def test_vapid_public_key_is_the_apps(device, app):
    answer = call("get", "/api/v1/device/vapid-public-key", device[1])
    assert answer.status_code == 200
    assert answer.json() == {
        "vapid_public_key": AppProviderConfig.objects.get(app=app).vapid_public_key
    }


def test_endpoints_need_a_device_token(device):
    assert Client().get("/api/v1/device/push-credentials").status_code == 401
    assert call("get", "/api/v1/device/vapid-public-key", "nope").status_code == 401


def test_the_registered_subscription_is_one_the_service_accepts(device):
    """A subscription made by the local push service passes validation."""
    service = WebPushService()
    service.url = "http://127.0.0.1:1"
    sub = service.subscribe()
    body = {
        "kind": "webpush",
        "endpoint": sub.endpoint,
        "keys": {"p256dh": sub.p256dh, "auth": sub.auth},
    }
    answer = call("post", "/api/v1/device/push-credentials", device[1], body)
    assert answer.status_code == 201
