"""The OpenAPI schema: valid, served with offline docs, and honoured by the
API under schemathesis-generated requests over every operation (no 5xx,
responses as documented), hostile ones included (NUL characters, hostile
nesting, unknown fields: 4xx problem JSON)."""

import copy
import json
import re
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from campaigns import lifecycle, saved_templates, segments
from devices.delivery import pushes
from devices.integrations import webhooks
from kpns_site.jsonbody import MAX_JSON_DEPTH
from tests.factories import make_api_key, make_app, make_device

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())


def test_schema_validates_without_warnings(tmp_path):
    # manage.py spectacular --validate --fail-on-warn
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
    )
    text = (tmp_path / "schema.yaml").read_text()
    assert "/api/v1/pushes/batch" in text and "application/problem+json" in text


def test_every_api_operation_documents_its_errors():
    raw = schema.raw_schema
    for path, item in raw["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "503" in codes, (method, path)
            if operation.get("security") and {"apiKey": []} in operation["security"]:
                assert {"401", "403", "429"} <= codes, (method, path)
                assert "Scope: `" in operation["description"], (method, path)
            if method in ("post", "patch"):
                assert {"400", "413", "415"} <= codes, (method, path)
    assert len([op for item in raw["paths"].values() for op in item]) >= 25
    # Unknown body fields are refused (400): every request body says so.
    bodies = [
        name
        for name, component in raw["components"]["schemas"].items()
        if name.endswith("Request") and name != "PushRequest"
    ]
    assert bodies
    for name in [*bodies, "PushRequest"]:
        component = raw["components"]["schemas"][name]
        assert component.get("additionalProperties") is False, name


@pytest.mark.django_db
def test_docs_pages_load_their_assets_locally(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    # No asset from another host (the page's CSRF token is random text).
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "cdn.jsdelivr" not in html.lower()
    asset = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert asset in html
    assert client.get("/api/redoc/").status_code == 200
    assert client.get("/api/schema/").status_code == 200


@pytest.fixture
def world(db):
    """An app with devices, a draft campaign, a message and a webhook
    endpoint; a key with every scope and a device token."""
    app = make_app()
    device, token = make_device(app, alias="user-1", tags=["vip"])
    make_device(app, alias="user-2", tags=["vip"])
    campaign = lifecycle.campaign_create(
        app=app, name="c", title="t", audience_kind="all"
    )
    message, _ = pushes.push_to_devices(app=app, device_ids=[device.pk], title="m")
    endpoint = webhooks.webhook_endpoint_create(
        app=app, url="https://example.com/h", events=["message.delivered"]
    )
    segment = segments.segment_create(app=app, name="VIPs", spec={"tags_any": ["vip"]})
    return {
        "client_key": app.client_key,
        "bearer": f"Bearer {make_api_key(app)[1]}",
        "device": f"Device {token}",
        "ids": {
            "device_id": device.pk,
            "campaign_id": campaign.pk,
            "message_id": message.pk,
            "endpoint_id": endpoint.pk,
            "template_id": saved_templates.template_create(
                app=app, name="t", title="Hi {{ alias }}"
            ).pk,
            "segment_id": segment.pk,
        },
    }


def credentials(case: Any, world: dict[str, Any]) -> dict[str, str]:
    """The operation's own credential: every operation is reached, not only
    the API-key ones (a device endpoint given a key answers 401)."""
    security = case.operation.definition.raw.get("security") or [{}]
    if any("deviceToken" in scheme for scheme in security):
        return {"Authorization": world["device"]}
    if any("apiKey" in scheme for scheme in security):
        return {"Authorization": world["bearer"]}
    return {}


def with_client_key(body: Any, world: dict[str, Any]) -> Any:
    """Registration needs the app's real client key to go past it."""
    if isinstance(body, dict) and "client_key" in body:
        return {**body, "client_key": world["client_key"]}
    return body


@pytest.fixture
def in_process_requests():
    """Like Django's test client: keep the test's transaction open across
    requests (request_started would otherwise close the connection)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.usefixtures("in_process_requests")
def test_api_conforms_to_its_schema(case, world):
    """Positive and negative examples: never a 5xx, and every status, content
    type, header and body as documented. Not checked: that every
    schema-valid request is accepted (an unknown id is a 404, a URL "0" is a
    400: rules the schema cannot express) and that every schema-invalid one
    is refused (an empty query parameter means "no filter")."""
    case.body = with_client_key(case.body, world)
    case.call_and_validate(
        headers=credentials(case, world),
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )


# Hostile requests ------------------------------------------------------------

NUL = "\x00"
# At the limit, just past it, and far past Python's recursion limit.
DEPTHS = (MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH + 1, 500, 5_000)
DEEP = "\x01deep\x01"  # stands for the deep JSON text until encoded


def _slots(value: Any, depth: int = 1) -> list[tuple[Any, Any, int]]:
    """Every (container, key or index, depth) below a JSON value."""
    found: list[tuple[Any, Any, int]] = []
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return found
    for key, child in items:
        found.append((value, key, depth))
        found.extend(_slots(child, depth + 1))
    return found


def _put_nul(data: Any, body: Any) -> Any:
    """A NUL somewhere in a string of the body (value or key), or in a new
    field when it holds none."""
    strings = [
        (parent, key) for parent, key, _ in _slots(body) if isinstance(parent[key], str)
    ]
    keys = [(parent, key) for parent, key, _ in _slots(body) if isinstance(key, str)]
    if strings and data.draw(st.booleans(), label="nul in a value"):
        parent, key = data.draw(st.sampled_from(strings), label="string")
        text = parent[key]
        at = data.draw(st.integers(0, len(text)), label="at")
        parent[key] = text[:at] + NUL + text[at:]
    elif keys and data.draw(st.booleans(), label="nul in a key"):
        parent, key = data.draw(st.sampled_from(keys), label="key")
        parent[key + NUL] = parent.pop(key)
    elif isinstance(body, dict):
        field = data.draw(
            st.sampled_from(["attributes", "audience", "data", "title", "name"]),
            label="field",
        )
        body[field] = data.draw(st.sampled_from([NUL, {"k": NUL}, [NUL]]))
    else:
        body = NUL
    return body


def _put_deep(data: Any, body: Any) -> tuple[Any, int]:
    """The deep placeholder in place of the body or one of its values, and
    the nesting of the whole once it is expanded."""
    slots = _slots(body)
    if slots and data.draw(st.booleans(), label="deep inside"):
        parent, key, depth = data.draw(st.sampled_from(slots), label="slot")
        parent[key] = DEEP
        return body, depth
    return DEEP, 0


def _encode(body: Any, depth: int, array: bool) -> str:
    deep = "[" * depth + "]" * depth if array else '{"a":' * depth + "1" + "}" * depth
    return json.dumps(body).replace(json.dumps(DEEP), deep)


def hostile_request(case: Any, data: Any, world: dict[str, Any]) -> dict[str, Any]:
    """The case with one hostile change: a NUL in the body, a query
    parameter or a header; hostile nesting; or an unknown body field.
    Returns the request and whether the parser alone must refuse it."""
    method = case.method.lower()
    params = dict(case.path_parameters or {})
    # Real objects (not revoked by a DELETE) so that bodies are read.
    if method != "delete" and data.draw(st.booleans(), label="real ids"):
        params.update({k: v for k, v in world["ids"].items() if k in params})
    path = case.path.format(**{k: quote(str(v), safe="") for k, v in params.items()})
    query = dict(case.query or {})
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    takes_body = method in ("post", "patch")
    body = copy.deepcopy(with_client_key(case.body, world)) if takes_body else None
    if takes_body and not isinstance(body, dict | list | str | int | float):
        body = {}  # an action without a body schema still reads one
    kind = data.draw(st.sampled_from(["nul", "deep", "unknown"]), label="kind")
    refused = False  # by the parser, whatever the endpoint
    raw = None
    if kind == "nul":
        where = data.draw(st.sampled_from(["body", "query", "header"]), label="where")
        if where == "body" and takes_body:
            body = _put_nul(data, body)
            refused = True
        elif where == "query" and query:
            name = data.draw(st.sampled_from(sorted(query)), label="query")
            query[name] = f"{query[name]}{NUL}"
        elif headers:
            name = data.draw(st.sampled_from(sorted(headers)), label="header")
            headers[name] = f"{headers[name]}{NUL}"
    elif kind == "deep" and takes_body:
        body, above = _put_deep(data, body)
        depth = data.draw(st.sampled_from(DEPTHS), label="depth")
        raw = _encode(body, depth, data.draw(st.booleans(), label="array"))
        refused = above + depth > MAX_JSON_DEPTH
    elif kind == "unknown" and isinstance(body, dict):
        body["ttl_second"] = 60
    if raw is None and body is not None:
        raw = json.dumps(body)
    return {
        "method": method,
        "path": path + ("?" + urlencode(query, doseq=True) if query else ""),
        "headers": {**headers, **credentials(case, world)},
        "raw": raw,
        "refused": refused and (not params or params.items() <= world["ids"].items()),
    }


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.usefixtures("in_process_requests")
def test_hostile_requests_are_4xx_problem_json(case, data, world):
    """Every operation, with NUL characters (PostgreSQL cannot store them:
    they were 503s), nesting up to 5,000 deep (a RecursionError, 500) and
    unknown fields: never a 5xx, every 4xx problem JSON, and a hostile body
    sent to a real object is a 400 whatever else it holds."""
    request = hostile_request(case, data, world)
    kwargs: dict[str, Any] = {"headers": request["headers"]}
    if request["raw"] is not None:
        kwargs.update(data=request["raw"], content_type="application/json")
    response = Client().generic(request["method"].upper(), request["path"], **kwargs)
    status = response.status_code
    assert status < 500, (request, response.content[:300])
    if status >= 400:
        assert response["Content-Type"] == "application/problem+json", request
        assert response.json()["status"] == status
    if request["refused"]:
        assert status == 400, (request, response.content[:300])
