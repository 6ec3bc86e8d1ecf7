"""Hostile HTTP input: every body, field and method the API does not accept
is a 4xx problem JSON, never a 5xx or a silently different request.

(Generated requests over every operation of the schema, hostile ones
included, are in tests/api/test_schema.py.)
"""

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.test import Client
from django.utils import timezone

from campaigns import lifecycle
from devices.delivery.protocol import MAX_DATA_DEPTH
from devices.models import Device, Message
from devices.registry.audience import audience_validate
from kpns_site.jsonbody import MAX_JSON_DEPTH
from tests.factories import make_api_key, make_app, make_device

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
NUL = "\x00"


@pytest.fixture
def world(db):
    """An app with a device, two draft campaigns, a key with every scope."""
    app = make_app()
    device, token = make_device(app, alias="user-1")
    campaign = lifecycle.campaign_create(
        app=app, name="c", title="t", audience_kind="all"
    )
    to_send = lifecycle.campaign_create(
        app=app, name="s", title="t", audience_kind="all"
    )
    key = make_api_key(app)[1]
    return {
        "app": app,
        "device": device,
        "campaign": campaign,
        "to_send": to_send,
        "bearer": {"HTTP_AUTHORIZATION": f"Bearer {key}"},
        "device_auth": {"HTTP_AUTHORIZATION": f"Device {token}"},
    }


def call(method, path, body=None, raw=None, **headers):
    kwargs = dict(headers)
    if method in ("get", "delete"):
        pass  # no body
    elif body is not None or raw is not None:
        kwargs["data"] = raw if raw is not None else json.dumps(body)
        kwargs["content_type"] = "application/json"
    return getattr(Client(), method)(path, **kwargs)


def problem(response, status):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    return body


def writes(world):
    """(method, path, auth, a valid body) for every write endpoint."""
    app, device, campaign = world["app"], world["device"], world["campaign"]
    bearer, device_auth = world["bearer"], world["device_auth"]
    return [
        ("post", "/api/v1/devices/register", {}, {"client_key": app.client_key}),
        ("patch", "/api/v1/device", device_auth, {"alias": "a"}),
        ("post", "/api/v1/devices", bearer, {"platform": "web"}),
        ("patch", f"/api/v1/devices/{device.pk}", bearer, {"alias": "a"}),
        ("post", "/api/v1/pushes", bearer, {"aliases": ["user-1"], "title": "t"}),
        (
            "post",
            "/api/v1/pushes/batch",
            bearer,
            {"messages": [{"aliases": ["user-1"], "title": "t"}]},
        ),
        ("post", "/api/v1/campaigns", bearer, {"name": "n", "title": "t"}),
        ("patch", f"/api/v1/campaigns/{campaign.pk}", bearer, {"title": "t2"}),
        (
            "post",
            f"/api/v1/campaigns/{campaign.pk}/schedule",
            bearer,
            {"send_at": (timezone.now() + timedelta(hours=1)).isoformat()},
        ),
        ("post", f"/api/v1/campaigns/{world['to_send'].pk}/send", bearer, {}),
        ("post", f"/api/v1/campaigns/{campaign.pk}/cancel", bearer, {}),
        (
            "post",
            "/api/v1/webhooks",
            bearer,
            {"url": "https://example.com/h", "events": ["message.delivered"]},
        ),
    ]


# NUL ---------------------------------------------------------------------------


NUL_BODIES = [
    # (endpoint index in writes(), body, the field the error must name)
    (0, {"attributes": {"plan": f"p{NUL}ro"}}, "attributes"),
    (0, {"attributes": {f"pl{NUL}an": "pro"}}, "attributes"),
    (0, {"attributes": {"deep": [{"x": ["a", NUL]}]}}, "attributes"),
    (1, {"attributes": {"plan": NUL}}, "attributes"),
    (2, {"attributes": {"plan": NUL}}, "attributes"),
    (3, {"attributes": {"plan": NUL}}, "attributes"),
    (
        4,
        {
            "title": "t",
            "audience": {"attributes": [{"key": "plan", "op": "eq", "value": NUL}]},
        },
        "audience",
    ),
    (4, {"title": "t", "audience": {"aliases": [f"user{NUL}"]}}, "audience"),
    (4, {"aliases": ["u"], "title": "t", "data": {"k": NUL}}, "data"),
    (5, {"messages": [{"aliases": ["u"], "title": "t", "data": NUL}]}, "messages"),
    (
        6,
        {
            "name": "n",
            "title": "t",
            "audience_kind": "filter",
            "audience": {"aliases": [NUL]},
        },
        "audience",
    ),
    (6, {"name": "n", "title": "t", "data": {"k": [NUL]}}, "data"),
    (7, {"audience": {"tags_any": [NUL]}}, "audience"),
    (7, {"name": f"n{NUL}"}, "name"),
    (8, {"send_at": f"2030-01-01T00:00:00Z{NUL}"}, "send_at"),
    (
        11,
        {"url": "https://e.com", "events": ["message.delivered"], "description": NUL},
        "description",
    ),
]


@pytest.mark.parametrize(("index", "body", "field"), NUL_BODIES)
def test_nul_in_any_text_is_400_naming_the_field(world, index, body, field):
    """PostgreSQL cannot store U+0000 in text or jsonb: it was a 503 with
    Retry-After, which clients retry for ever."""
    method, path, auth, _valid = writes(world)[index]
    before = (Device.objects.count(), Message.objects.count())
    body = problem(call(method, path, body, **auth), 400)
    assert field in body["errors"], body
    assert "NUL" in json.dumps(body["errors"]) or "Null" in json.dumps(body)
    assert (Device.objects.count(), Message.objects.count()) == before


@pytest.mark.parametrize(
    "spec",
    [
        {"aliases": ["a", NUL]},
        {"attributes": [{"key": "plan", "op": "eq", "value": f"p{NUL}"}]},
        {"attributes": [{"key": "plan", "op": "in", "value": [["x", NUL]]}]},
        {"attributes": [{"key": "plan", "op": "eq", "value": {NUL: 1}}]},
    ],
)
def test_the_audience_service_refuses_nul_for_the_admin_too(spec):
    """The admin's audience form does not pass through the API's parser."""
    with pytest.raises(DjangoValidationError) as refused:
        audience_validate("filter", spec)
    assert "NUL" in str(refused.value.message_dict["audience"])


def test_nul_in_query_parameters_is_400(world):
    for path in ("/api/v1/devices?alias=a%00", "/api/v1/presence?alias=%00"):
        problem(call("get", path, **world["bearer"]), 400)


@pytest.mark.parametrize("position", ["abc", NUL, "1.5", "", "x" * 300])
def test_forged_cursor_positions_are_400_naming_the_cursor(world, position):
    """A cursor is base64 of a query string the client can forge: a
    position that is not an id of the ordering was a 500 on /campaigns."""
    cursor = base64.b64encode(f"p={position}".encode()).decode()
    for path in (
        "/api/v1/campaigns",
        "/api/v1/devices",
        f"/api/v1/campaigns/{world['campaign'].pk}/results",
    ):
        response = Client().get(path, {"cursor": cursor}, **world["bearer"])
        assert problem(response, 400)["errors"] == {"cursor": ["Invalid cursor."]}


# Nesting -----------------------------------------------------------------------


def test_deep_json_to_the_public_register_endpoint_is_400_problem():
    """It was a 500 text/html (RecursionError), with no credentials needed."""
    for raw in ("[" * 1000 + "]" * 1000, '{"a":' * 5000 + "1" + "}" * 5000):
        body = problem(call("post", "/api/v1/devices/register", raw=raw), 400)
        assert str(MAX_JSON_DEPTH) in body["detail"]


def test_push_data_nested_500_deep_is_400_problem(world):
    """It crashed in inbox._holds_nul (RecursionError, 500)."""
    data = {"k": 1}
    for _ in range(500):
        data = {"k": data}
    raw = json.dumps({"aliases": ["user-1"], "title": "t", "data": data})
    for path, body in (
        ("/api/v1/pushes", raw),
        ("/api/v1/pushes/batch", '{"messages": [' + raw + "]}"),
    ):
        problem(call("post", path, raw=body, **world["bearer"]), 400)
    assert not Message.objects.exists()


def test_nesting_limit_is_exact_and_leaves_room_for_the_deepest_valid_push(world):
    """A push's data may nest MAX_DATA_DEPTH deep, also inside a batch item
    (body, messages, item, data: 3 levels above it); the body limit is
    MAX_JSON_DEPTH and one more level is refused."""
    assert MAX_JSON_DEPTH >= MAX_DATA_DEPTH + 3
    data: object = {}
    for _ in range(MAX_DATA_DEPTH - 1):
        data = {"k": data}
    item = {"aliases": ["user-1"], "title": "t", "data": data}
    response = call(
        "post", "/api/v1/pushes/batch", {"messages": [item]}, **world["bearer"]
    )
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["status"] == 202
    # The body, its attributes object, then lists: MAX_JSON_DEPTH levels in
    # all are accepted, one more is refused by the parser.
    lists = MAX_JSON_DEPTH - 2
    at_limit = '{"attributes": {"a": ' + "[" * lists + "]" * lists + "}}"
    over = '{"attributes": {"a": [' + "[" * lists + "]" * lists + "]}}"
    path, auth = "/api/v1/device", world["device_auth"]
    ok = call("patch", path, raw=at_limit, **auth)
    assert ok.status_code == 200, ok.content
    refused = problem(call("patch", path, raw=over, **auth), 400)
    assert f"{MAX_JSON_DEPTH} levels" in refused["detail"]
    # The documented limit is this one.
    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    assert f"more than {MAX_JSON_DEPTH} levels deep" in docs
    assert f"| {MAX_JSON_DEPTH} levels, twice the {MAX_DATA_DEPTH} " in docs


def test_brackets_inside_strings_do_not_count_as_nesting(world):
    text = "[{" * 200
    response = call(
        "post",
        "/api/v1/pushes",
        {"aliases": ["user-1"], "title": "t", "body": text},
        **world["bearer"],
    )
    assert response.status_code == 202, response.content
    escaped = '{"aliases": ["user-1"], "title": "t", "body": "\\"' + "[" * 100 + '"}'
    assert (
        call("post", "/api/v1/pushes", raw=escaped, **world["bearer"]).status_code
        == 202
    )


# Unknown fields ----------------------------------------------------------------


def test_valid_bodies_of_every_write_endpoint_are_accepted(world):
    """The baseline of the tests below: these bodies pass as they are."""
    for method, path, auth, valid in writes(world):
        response = call(method, path, valid, **auth)
        # In this order: one campaign is scheduled then cancelled.
        assert response.status_code < 300, (method, path, response.content)


@pytest.mark.parametrize("index", range(12))
def test_unknown_body_fields_are_400_naming_them(world, index):
    """A typo (``ttl_second``) was silently ignored: sent with the default TTL."""
    method, path, auth, valid = writes(world)[index]
    body = problem(call(method, path, {**valid, "ttl_second": 60}, **auth), 400)
    assert list(body["errors"]) == ["ttl_second"], body


def test_unknown_fields_inside_a_batch_item_are_that_items_400(world):
    messages = [
        {"aliases": ["user-1"], "title": "t"},
        {"aliases": ["user-1"], "title": "t", "ttl_second": 60},
    ]
    response = call(
        "post", "/api/v1/pushes/batch", {"messages": messages}, **world["bearer"]
    )
    assert response.status_code == 200
    first, second = response.json()["results"]
    assert first["status"] == 202
    assert second["status"] == 400
    assert list(second["error"]["errors"]) == ["ttl_second"]


@pytest.mark.parametrize(
    "audience",
    [
        {"tags_anyy": ["vip"]},
        {"attributes": [{"key": "plan", "op": "eq", "value": "pro", "vlaue": 1}]},
    ],
)
def test_unknown_audience_keys_are_400(world, audience):
    for path, body in (
        ("/api/v1/pushes", {"title": "t", "audience": audience}),
        (
            "/api/v1/campaigns",
            {
                "name": "n",
                "title": "t",
                "audience_kind": "filter",
                "audience": audience,
            },
        ),
    ):
        body = problem(call("post", path, body, **world["bearer"]), 400)
        assert "audience" in body["errors"], body
    assert not Message.objects.exists()


# Methods and media types -----------------------------------------------------


UNDECLARED = [
    ("put", "/api/v1/pushes", "POST"),
    ("get", "/api/v1/pushes", "POST"),
    ("delete", "/api/v1/campaigns", "GET, POST"),
    ("post", "/api/v1/presence", "GET"),
    ("put", "/api/v1/devices/{device}", "GET, PATCH, DELETE"),
    ("post", "/api/v1/campaigns/{campaign}/stats", "GET"),
    ("delete", "/api/v1/device", "GET, PATCH"),
    ("get", "/api/v1/devices/register", "POST"),
]


@pytest.mark.parametrize(("method", "path", "allowed"), UNDECLARED)
@pytest.mark.parametrize("who", ["anonymous", "bearer", "read_only_key", "device_auth"])
def test_undeclared_methods_are_405_with_allow_for_every_caller(
    world, method, path, allowed, who
):
    """Was 403 (or 401): credentials and scopes were checked first."""
    path = path.format(device=world["device"].pk, campaign=world["campaign"].pk)
    headers = {
        "anonymous": {},
        "bearer": world["bearer"],
        "device_auth": world["device_auth"],
        "read_only_key": {
            "HTTP_AUTHORIZATION": "Bearer "
            + make_api_key(world["app"], ["devices:read"])[1]
        },
    }[who]
    response = call(method, path, {}, **headers)
    problem(response, 405)
    assert set(response["Allow"].split(", ")) >= set(allowed.split(", "))
    assert method.upper() not in response["Allow"]


def test_a_body_that_is_not_json_is_415_problem(world):
    response = Client().post(
        "/api/v1/pushes",
        "title=t",
        content_type="application/x-www-form-urlencoded",
        **world["bearer"],
    )
    problem(response, 415)
