"""Pushes through the server API: targets, content, limits, batch, status."""

import pytest

from devices.delivery import receipts
from devices.models import Delivery, DeliveryStatus, Device, Message
from tests.factories import make_device

pytestmark = pytest.mark.django_db


def push(api, to, **content):
    content.setdefault("title", "Hello")
    return api.post("/api/v1/pushes", {**to, **content})


def test_push_to_an_alias_returns_202_with_the_message_id_and_count(api, app):
    phone, _ = make_device(app, alias="user-42")
    laptop, _ = make_device(app, alias="user-42", platform="web")
    make_device(app, alias="user-7")
    response = push(
        api,
        {"aliases": ["user-42"]},
        body="Your order shipped",
        url="https://example.com/o/1",
        data={"order": 1},
        ttl_seconds=600,
        priority="high",
        collapse_key="order-1",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["targets"] == 2
    message = Message.objects.get(pk=body["message_id"])
    assert (message.app, message.priority, message.collapse_key) == (
        app,
        "high",
        "order-1",
    )
    assert message.data == {"order": 1}
    targeted = set(
        Delivery.objects.filter(message=message).values_list("device_id", flat=True)
    )
    assert targeted == {phone.pk, laptop.pk}


def test_push_by_device_ids_tags_and_audience(api, app):
    a, _ = make_device(app, tags=["vip"], platform="ios", locale="fr-FR")
    b, _ = make_device(app, tags=["beta"], platform="web")
    c, _ = make_device(app)
    assert push(api, {"device_ids": [str(a.pk), str(c.pk)]}).json()["targets"] == 2
    assert push(api, {"tags": ["vip", "beta"]}).json()["targets"] == 2
    assert push(api, {"audience": {"locales": ["fr"]}}).json()["targets"] == 1
    assert (
        push(api, {"audience": {"platforms": ["web"], "tags_none": ["x"]}}).json()[
            "targets"
        ]
        == 1
    )
    assert push(api, {"audience": {}}).json()["targets"] == 3
    # Nobody there yet is not an error: the message exists with 0 targets.
    assert push(api, {"aliases": ["ghost"]}).json()["targets"] == 0
    del b


def test_push_never_reaches_another_apps_devices(api, app, other_app):
    theirs, _ = make_device(other_app, alias="shared", tags=["vip"])
    assert push(api, {"device_ids": [str(theirs.pk)]}).json()["targets"] == 0
    assert push(api, {"aliases": ["shared"]}).json()["targets"] == 0
    assert push(api, {"audience": {}}).json()["targets"] == 0
    assert not Delivery.objects.filter(device=theirs).exists()


def test_revoked_devices_are_not_targeted(api, app):
    device, _ = make_device(app, alias="u")
    Device.objects.filter(pk=device.pk).update(is_active=False)
    assert push(api, {"aliases": ["u"]}).json()["targets"] == 0


@pytest.mark.parametrize(
    ("to", "content", "field"),
    [
        ({}, {}, "__all__"),
        ({"aliases": ["a"], "tags": ["b"]}, {}, "__all__"),
        ({"aliases": []}, {}, "aliases"),
        ({"tags": [f"t{i}" for i in range(51)]}, {}, "tags"),
        ({"device_ids": ["not-a-uuid"]}, {}, "device_ids"),
        ({"audience": {"bogus": 1}}, {}, "audience"),
        ({"aliases": ["a"]}, {"title": ""}, "title"),
        ({"aliases": ["a"]}, {"ttl_seconds": -1}, "ttl_seconds"),
        ({"aliases": ["a"]}, {"priority": "urgent"}, "priority"),
        ({"aliases": ["a"]}, {"url": "javascript:alert(1)"}, "url"),
        ({"aliases": ["a"]}, {"data": [1, 2]}, "data"),
        ({"aliases": ["a"]}, {"data": {"blob": "x" * 5000}}, "__all__"),
        ({"aliases": ["a"]}, {"data": {"k": ["a\x00b"]}}, "data"),
        ({"aliases": ["a"]}, {"data": {"k\x00": 1}}, "data"),
    ],
)
def test_invalid_pushes_are_400_naming_the_field(api, app, to, content, field):
    response = push(api, to, **content)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"], response.json()
    assert not Message.objects.exists()


def test_payload_limit_is_enforced_not_truncated(api, app, settings):
    make_device(app, alias="u")
    settings.KPNS = {**settings.KPNS, "MAX_PAYLOAD_BYTES": 600}
    response = push(api, {"aliases": ["u"]}, body="x" * 700)
    assert response.status_code == 400
    assert "limit is 600" in response.json()["errors"]["__all__"][0]
    assert push(api, {"aliases": ["u"]}, body="x" * 100).status_code == 202


def test_a_direct_push_is_capped_in_devices(api, app, settings):
    settings.KPNS = {**settings.KPNS, "API_MAX_PUSH_DEVICES": 2}
    for _ in range(3):
        make_device(app, tags=["t"])
    response = push(api, {"tags": ["t"]})
    assert response.status_code == 400
    assert "campaign" in response.json()["errors"]["__all__"][0]
    assert not Message.objects.exists()


def test_batch_sends_each_item_on_its_own_with_per_item_status(api, app):
    make_device(app, alias="a")
    make_device(app, alias="b")
    response = api.post(
        "/api/v1/pushes/batch",
        {
            "messages": [
                {"aliases": ["a"], "title": "One"},
                {"aliases": ["b"], "title": ""},
                {"aliases": ["a", "b"], "title": "Three", "data": {"k": 1}},
                {"title": "Four"},
                "not an object",
            ]
        },
    )
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 400, 202, 400, 400]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert results[0]["targets"] == 1 and results[2]["targets"] == 2
    assert "title" in results[1]["error"]["errors"]
    assert "__all__" in results[3]["error"]["errors"]
    assert results[1]["message_id"] is None
    assert Message.objects.count() == 2


def test_batch_size_is_limited(api, settings):
    settings.KPNS = {**settings.KPNS, "API_MAX_BATCH": 3}
    item = {"aliases": ["a"], "title": "x"}
    response = api.post("/api/v1/pushes/batch", {"messages": [item] * 4})
    assert response.status_code == 400
    assert response.json()["errors"]["messages"] == ["At most 3 messages."]
    assert not Message.objects.exists()
    assert api.post("/api/v1/pushes/batch", {"messages": []}).status_code == 400
    assert api.post("/api/v1/pushes/batch", {"messages": {}}).status_code == 400


def test_message_status_counts_and_one_devices_delivery(api, app, other_api):
    a, _ = make_device(app, alias="u")
    b, _ = make_device(app, alias="u")
    message_id = push(api, {"aliases": ["u"]}).json()["message_id"]
    delivery = Delivery.objects.get(message_id=message_id, device=a)
    receipts.receipts_record(receipts.Receipts(delivered=[delivery.pk]))
    response = api.get(f"/api/v1/messages/{message_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["counts"]["targeted"] == 2
    assert body["counts"]["delivered"] == 1 and body["counts"]["pending"] == 1
    assert "device" not in body
    one = api.get(f"/api/v1/messages/{message_id}?device_id={a.pk}").json()["device"]
    assert one["status"] == DeliveryStatus.DELIVERED and one["delivered_at"]
    other, _ = make_device(app)
    assert (
        api.get(f"/api/v1/messages/{message_id}?device_id={other.pk}").status_code
        == 404
    )
    assert api.get(f"/api/v1/messages/{message_id}?device_id=zzz").status_code == 400
    # Another app's key cannot read it.
    assert other_api.get(f"/api/v1/messages/{message_id}").status_code == 404
    del b


def test_unknown_api_urls_answer_problem_json(api):
    response = api.get("/api/v1/nope")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert api.get("/api/v1/messages/not-a-uuid").status_code == 404


def test_batch_by_device_ids_gives_consecutive_seqs_in_item_order(api, app, other_app):
    first, second = make_device(app)[0], make_device(app)[0]
    revoked = make_device(app)[0]
    Device.objects.filter(pk=revoked.pk).update(is_active=False)
    foreign = make_device(other_app)[0]
    Device.objects.filter(pk=first.pk).update(last_seq=7)
    items = [
        {"device_ids": [str(first.pk)], "title": "m0"},
        {"device_ids": [str(first.pk), str(second.pk)], "title": "m1"},
        {"device_ids": [str(revoked.pk), str(foreign.pk)], "title": "m2"},
        {"device_ids": [str(first.pk), str(first.pk)], "title": "m3"},
        {"device_ids": ["not-a-uuid"], "title": "m4"},
    ]
    response = api.post("/api/v1/pushes/batch", {"messages": items})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 202, 202, 202, 400]
    assert [r["targets"] for r in results[:4]] == [1, 2, 0, 1]
    seqs = list(
        Delivery.objects.filter(device=first)
        .order_by("seq")
        .values_list("seq", "message__title")
    )
    assert seqs == [(8, "m0"), (9, "m1"), (10, "m3")]
    assert list(
        Delivery.objects.filter(device=second).values_list("seq", "message__title")
    ) == [(1, "m1")]
    first.refresh_from_db()
    assert first.last_seq == 10
    assert not Delivery.objects.filter(device__in=[revoked, foreign]).exists()
    assert Delivery.objects.filter(status=DeliveryStatus.PENDING).count() == 4


def test_batch_with_collapse_keys_collapses_within_the_batch(api, app):
    device = make_device(app)[0]
    items = [
        {"device_ids": [str(device.pk)], "title": "old", "collapse_key": "score"},
        {"device_ids": [str(device.pk)], "title": "new", "collapse_key": "score"},
    ]
    response = api.post("/api/v1/pushes/batch", {"messages": items})
    assert [r["status"] for r in response.json()["results"]] == [202, 202]
    statuses = dict(
        Delivery.objects.filter(device=device).values_list("message__title", "status")
    )
    assert statuses == {"old": DeliveryStatus.COLLAPSED, "new": DeliveryStatus.PENDING}
