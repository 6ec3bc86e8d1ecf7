"""POST /api/v1/pushes/stream: NDJSON in, one result line per push out,
each chunk answered once committed; a bad line fails alone."""

import json
from typing import Any

import pytest
from django.test import Client

from devices.models import Delivery, IdempotencyRecord, Message
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db

NDJSON = "application/x-ndjson"


def stream(key: str, lines: list[Any] | str, **headers: Any) -> Any:
    body = (
        lines
        if isinstance(lines, str)
        else "".join(
            (line if isinstance(line, str) else json.dumps(line)) + "\n"
            for line in lines
        )
    )
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    extra.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    return Client().generic(
        "POST",
        "/api/v1/pushes/stream",
        data=body.encode(),
        content_type=headers.pop("content_type", NDJSON),
        **extra,
    )


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response
    assert response["Content-Type"] == NDJSON
    text = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def key(app):
    return make_api_key(app)[1]


def test_each_line_is_sent_and_answered_in_order(app, key, settings):
    settings.KPNS = {**settings.KPNS, "API_STREAM_CHUNK": 3}
    devices = [make_device(app)[0] for _ in range(7)]
    lines = [
        {"device_ids": [str(d.pk)], "title": f"n{i}", "data": {"i": i}}
        for i, d in enumerate(devices)
    ]
    out = results(stream(key, lines))
    assert [r["line"] for r in out] == list(range(1, 8))
    assert [r["status"] for r in out] == [202] * 7
    for index, result in enumerate(out):
        message = Message.objects.get(pk=result["message_id"])
        assert (message.title, message.data) == (f"n{index}", {"i": index})
        row = Delivery.objects.get(message=message)
        assert (row.device_id, row.seq, result["targets"]) == (devices[index].pk, 1, 1)


def test_a_bad_line_gets_its_own_400_and_the_others_are_sent(app, key):
    device, _ = make_device(app)
    good = {"device_ids": [str(device.pk)], "title": "ok"}
    lines: list[Any] = [
        good,
        "{not json",
        [1, 2],
        {"device_ids": [str(device.pk)], "title": ""},
        {"device_ids": [str(device.pk)], "title": "nul \u0000"},
        "[" * 70 + "]" * 70,
        {**good, "ttl_second": 5},
        "",
        good,
    ]
    out = results(stream(key, lines))
    assert [(r["line"], r["status"]) for r in out] == [
        (1, 202),
        (2, 400),
        (3, 400),
        (4, 400),
        (5, 400),
        (6, 400),
        (7, 400),
        (9, 202),  # a blank line has no result
    ]
    assert "title" in out[3]["error"]["errors"]
    assert out[4]["error"]["status"] == 400
    assert Delivery.objects.filter(device=device).count() == 2


def test_idempotency_keys_replay_per_line(app, key):
    device, _ = make_device(app)
    push = {"device_ids": [str(device.pk)], "title": "once"}
    first = results(
        stream(
            key,
            [
                {**push, "idempotency_key": "k1"},
                {**push, "idempotency_key": "k1"},  # the same key in one stream
                {**push, "title": "other", "idempotency_key": "k1"},
            ],
        )
    )
    assert [r["status"] for r in first] == [202, 202, 422]
    assert first[1]["message_id"] == first[0]["message_id"]
    assert first[1]["replayed"] is True
    again = results(stream(key, [{**push, "idempotency_key": "k1"}]))
    assert again[0]["message_id"] == first[0]["message_id"]
    assert again[0]["replayed"] is True
    assert Delivery.objects.filter(device=device).count() == 1
    assert IdempotencyRecord.objects.count() == 1


def test_whole_request_errors_are_problem_json(app, key, settings):
    device, _ = make_device(app)
    line = [{"device_ids": [str(device.pk)], "title": "x"}]
    wrong_type = stream(key, line, content_type="application/json")
    assert wrong_type.status_code == 415
    assert wrong_type["Content-Type"] == "application/problem+json"
    keyed = stream(key, line, **{"Idempotency-Key": "k"})
    assert keyed.status_code == 400
    assert "Idempotency-Key" in keyed.json()["errors"]
    assert stream("kpns_sk_nope", line).status_code == 401
    settings.KPNS = {**settings.KPNS, "API_STREAM_MAX_BYTES": 10}
    assert stream(key, line).status_code == 413
    assert not Delivery.objects.exists()


def test_lines_past_the_limit_are_refused_and_not_read(app, key, settings):
    settings.KPNS = {**settings.KPNS, "API_STREAM_MAX_LINES": 2}
    device, _ = make_device(app)
    line = {"device_ids": [str(device.pk)], "title": "x"}
    out = results(stream(key, [line, line, line, line]))
    assert [(r["line"], r["status"]) for r in out] == [(1, 202), (2, 202), (3, 413)]
    assert Delivery.objects.filter(device=device).count() == 2


def test_a_line_over_the_body_limit_is_refused_alone(app, key, settings):
    settings.KPNS_MAX_REQUEST_BODY_BYTES = 300
    device, _ = make_device(app)
    line = {"device_ids": [str(device.pk)], "title": "x"}
    out = results(stream(key, [line, {**line, "body": "b" * 400}, line]))
    assert [(r["line"], r["status"]) for r in out] == [(1, 202), (2, 400), (3, 202)]


def test_a_scope_is_needed(app):
    _, read_only = make_api_key(app, scopes=["devices:read"])
    assert stream(read_only, [{"aliases": ["a"], "title": "x"}]).status_code == 403
