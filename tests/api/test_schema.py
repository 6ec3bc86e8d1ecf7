"""The OpenAPI schema: valid, served with offline docs, and honoured by the
API under schemathesis-generated requests (no 5xx, responses as documented)."""

import re

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

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
                assert {"400", "413"} <= codes, (method, path)
    assert len([op for item in raw["paths"].values() for op in item]) >= 25


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
def bearer(db):
    """A key with every scope, on an app with a few devices and a campaign."""
    app = make_app()
    for alias in ("user-1", "user-2"):
        make_device(app, alias=alias, tags=["vip"])
    return {"Authorization": f"Bearer {make_api_key(app)[1]}"}


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
def test_api_conforms_to_its_schema(case, bearer):
    """Positive and negative examples: never a 5xx, and every status, content
    type, header and body as documented. Not checked: that every
    schema-valid request is accepted (an unknown id is a 404, a URL "0" is a
    400: rules the schema cannot express) and that every schema-invalid one
    is refused (an empty query parameter means "no filter")."""
    case.call_and_validate(
        headers=bearer,
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
