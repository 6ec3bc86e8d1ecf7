"""End-to-end encrypted pushes through the API (docs/e2ee.md): device keys,
the key directory, and pushes that carry only ciphertext."""

import json

import pytest
from django.test import Client

from devices.models import DeviceKey, Message
from kpns_sdk.e2ee import DeviceKey as SdkKey
from kpns_sdk.e2ee import encrypt_for_device
from tests.factories import make_device

pytestmark = pytest.mark.django_db


def _put_key(token: str, key: SdkKey, kid: str | None = None):
    return Client().put(
        "/api/v1/device/key",
        data=json.dumps({"kid": kid or key.kid, "public_key": key.public_key}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token}",
    )


@pytest.fixture
def keyed(app):
    device, token = make_device(app, alias="ann")
    key = SdkKey.generate()
    assert _put_key(token, key).status_code == 200
    return device, token, key


def test_a_device_registers_and_rotates_its_key(app):
    device, token = make_device(app)
    first, second = SdkKey.generate(), SdkKey.generate()
    answer = _put_key(token, first)
    assert answer.status_code == 200
    assert answer.json()["kid"] == first.kid
    assert answer.json()["algorithm"] == "KPNS-E2EE-1"
    assert _put_key(token, second).status_code == 200
    stored = DeviceKey.objects.get(device=device)
    assert (stored.kid, stored.public_key) == (second.kid, second.public_key)


@pytest.mark.parametrize(
    "public_key",
    [
        "abc",
        "B" + "A" * 86,  # 65 bytes, but not a point on the curve
        "not base64!",
    ],
)
def test_a_key_that_is_not_a_p256_point_is_a_400(app, public_key):
    _device, token = make_device(app)
    answer = Client().put(
        "/api/v1/device/key",
        data=json.dumps({"kid": "k1", "public_key": public_key}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token}",
    )
    assert answer.status_code == 400
    assert "public_key" in answer.json()["errors"]


def test_the_key_directory_lists_current_keys_by_id_alias_and_tag(api, app, keyed):
    device, _token, key = keyed
    make_device(app, alias="bob")  # no key: not listed
    for query in (f"device_id={device.pk}", "alias=ann", ""):
        answer = api.get(f"/api/v1/device-keys?{query}")
        assert answer.status_code == 200, answer.content
        assert answer.json()["results"] == [
            {
                "device_id": str(device.pk),
                "kid": key.kid,
                "public_key": key.public_key,
                "algorithm": "KPNS-E2EE-1",
                "updated_at": answer.json()["results"][0]["updated_at"],
            }
        ]
    assert api.get("/api/v1/device-keys?alias=bob").json()["results"] == []
    assert api.get("/api/v1/device-keys?device_id=nope").status_code == 400


def test_another_apps_key_directory_shows_none_of_ours(other_api, keyed):
    assert other_api.get("/api/v1/device-keys").json()["results"] == []


def test_an_encrypted_push_stores_the_ciphertext_and_no_plaintext(api, keyed):
    device, _token, key = keyed
    encrypted = encrypt_for_device(key.public_key, {"title": "SECRET-TITLE-1"})
    answer = api.post(
        "/api/v1/pushes",
        {
            "device_ids": [str(device.pk)],
            "title": "New message",
            "encrypted": encrypted,
        },
    )
    assert answer.status_code == 202, answer.content
    message = Message.objects.get(pk=answer.json()["message_id"])
    assert message.encrypted == encrypted
    assert (message.title, message.body, message.data) == ("New message", "", {})
    assert answer.json()["targets"] == 1


def test_an_encrypted_push_needs_no_visible_title(api, keyed):
    device, _token, key = keyed
    encrypted = encrypt_for_device(key.public_key, {"title": "x"})
    answer = api.post(
        "/api/v1/pushes", {"device_ids": [str(device.pk)], "encrypted": encrypted}
    )
    assert answer.status_code == 202, answer.content
    assert Message.objects.get(pk=answer.json()["message_id"]).title == ""


def test_a_plain_push_still_needs_a_title(api, keyed):
    device, _token, _key = keyed
    answer = api.post("/api/v1/pushes", {"device_ids": [str(device.pk)]})
    assert answer.status_code == 400
    assert "title" in answer.json()["errors"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"body": "leaks"}, "body"),
        ({"data": {"a": 1}}, "data"),
    ],
)
def test_plaintext_beside_the_ciphertext_is_refused(api, keyed, extra, field):
    device, _token, key = keyed
    encrypted = encrypt_for_device(key.public_key, {"title": "x"})
    answer = api.post(
        "/api/v1/pushes",
        {"device_ids": [str(device.pk)], "encrypted": encrypted, **extra},
    )
    assert answer.status_code == 400
    assert field in answer.json()["errors"]
    assert not Message.objects.exists()


def test_a_push_to_a_rotated_away_key_is_refused(keyed, api):
    device, token, old = keyed
    _put_key(token, SdkKey.generate())
    encrypted = encrypt_for_device(old.public_key, {"title": "x"})
    answer = api.post(
        "/api/v1/pushes", {"device_ids": [str(device.pk)], "encrypted": encrypted}
    )
    assert answer.status_code == 400
    assert "current key" in json.dumps(answer.json()["errors"])


def test_an_encrypted_push_names_one_device_by_id(api, app, keyed):
    device, _token, key = keyed
    other, _ = make_device(app)
    encrypted = encrypt_for_device(key.public_key, {"title": "x"})
    for targets in (
        {"device_ids": [str(device.pk), str(other.pk)]},
        {"aliases": ["ann"]},
    ):
        answer = api.post("/api/v1/pushes", {**targets, "encrypted": encrypted})
        assert answer.status_code == 400, targets
        assert "device_ids" in answer.json()["errors"]


def test_a_batch_carries_one_encrypted_push_per_device(api, app, keyed):
    device, _token, key = keyed
    second, token2 = make_device(app)
    key2 = SdkKey.generate()
    _put_key(token2, key2)
    items = [
        {"device_ids": [str(d.pk)], "encrypted": encrypt_for_device(k.public_key, {})}
        for d, k in ((device, key), (second, key2))
    ]
    items.append({"device_ids": [str(second.pk)], "encrypted": items[0]["encrypted"]})
    answer = api.post("/api/v1/pushes/batch", {"messages": items})
    assert answer.status_code == 200
    statuses = [r["status"] for r in answer.json()["results"]]
    assert statuses == [202, 202, 400]  # the third is encrypted to another key
    stored = Message.objects.filter(encrypted__isnull=False).order_by("created_at")
    assert {m.encrypted["kid"] for m in stored} == {key.kid, key2.kid}


def test_an_encrypted_push_over_the_payload_limit_is_a_400(api, keyed):
    """docs/e2ee.md, "Limits": about 2,760 bytes of plaintext fit in 4,096."""
    device, _token, key = keyed
    for size, expected in ((2_500, 202), (3_200, 400)):
        encrypted = encrypt_for_device(key.public_key, {"body": "x" * size})
        answer = api.post(
            "/api/v1/pushes", {"device_ids": [str(device.pk)], "encrypted": encrypted}
        )
        assert answer.status_code == expected, (size, answer.content)
    assert "the limit is 4096" in json.dumps(answer.json()["errors"])


def test_the_key_directory_takes_an_audience_filter(api, app, keyed):
    device, _token, key = keyed
    tagged, token = make_device(app, alias="cy")
    _put_key(token, SdkKey.generate())
    answer = api.post("/api/v1/device-keys/query", {"audience": {"aliases": ["ann"]}})
    assert answer.status_code == 200, answer.content
    assert [r["kid"] for r in answer.json()["results"]] == [key.kid]
    everyone = api.post("/api/v1/device-keys/query", {"audience": {}}).json()
    assert {r["device_id"] for r in everyone["results"]} == {
        str(device.pk),
        str(tagged.pk),
    }
    bad = api.post("/api/v1/device-keys/query", {"audience": {"nope": 1}})
    assert bad.status_code == 400
    assert "audience" in bad.json()["errors"]
