"""API keys: hashed at rest, shown once, scoped, revocable, bound to one app."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.integrations import apikeys
from devices.models import ApiKey
from devices.registry.tokens import hash_token
from tests.api.conftest import ApiClient
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db


def test_key_is_stored_as_a_hash_with_a_visible_prefix(app):
    api_key, key = make_api_key(app)
    assert key.startswith("kpns_sk_") and len(key) > 30
    assert api_key.key_hash == hash_token(key)
    assert key.startswith(api_key.prefix) and len(api_key.prefix) < len(key) // 2
    assert key not in str(ApiKey.objects.values_list().get(pk=api_key.pk))


def test_scopes_are_validated(app):
    with pytest.raises(ValidationError) as exc:
        apikeys.api_key_create(app=app, name="x", scopes=["push:send", "root"])
    assert "scopes" in exc.value.message_dict
    with pytest.raises(ValidationError):
        apikeys.api_key_create(app=app, name="x", scopes=[])


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer kpns_sk_nope", "Bearer a b", "Basic YWRtaW46YWRtaW4="],
)
def test_missing_or_wrong_key_is_401_problem(client, app, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/api/v1/devices", **headers)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 401


def test_revoked_key_is_401(app):
    api_key, key = make_api_key(app)
    api = ApiClient(key)
    assert api.get("/api/v1/devices").status_code == 200
    apikeys.api_key_revoke(api_key=api_key)
    response = api.get("/api/v1/devices")
    assert response.status_code == 401
    assert response.json()["detail"] == "Unknown or revoked API key."


def test_device_token_cannot_use_server_endpoints(client, app):
    device, token = make_device(app)
    for path in ("/api/v1/devices", f"/api/v1/devices/{device.pk}", "/api/v1/presence"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Device {token}")
        assert response.status_code == 401, path
    response = client.post(
        "/api/v1/pushes",
        {"device_ids": [str(device.pk)], "title": "x"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token}",
    )
    assert response.status_code == 401


def test_a_key_without_the_scope_is_403_naming_it(app):
    _, key = make_api_key(app, scopes=["devices:read"])
    api = ApiClient(key)
    assert api.get("/api/v1/devices").status_code == 200
    response = api.post("/api/v1/pushes", {"aliases": ["a"], "title": "x"})
    assert response.status_code == 403
    assert "push:send" in response.json()["detail"]
    assert api.post("/api/v1/devices", {"platform": "web"}).status_code == 403
    assert api.get("/api/v1/campaigns").status_code == 403
    assert api.get("/api/v1/webhooks").status_code == 403


def test_last_used_at_is_written_at_most_once_a_minute(app, django_assert_num_queries):
    api_key, key = make_api_key(app)
    api = ApiClient(key)
    api.get("/api/v1/presence")
    api_key.refresh_from_db()
    first = api_key.last_used_at
    assert first is not None
    api.get("/api/v1/presence")
    api_key.refresh_from_db()
    assert api_key.last_used_at == first
    ApiKey.objects.filter(pk=api_key.pk).update(
        last_used_at=timezone.now() - timedelta(minutes=2)
    )
    apikeys.forget(api_key)  # the process's cached copy ages out as well
    api.get("/api/v1/presence")
    api_key.refresh_from_db()
    assert api_key.last_used_at > first


def test_a_checked_key_is_not_looked_up_again(app):
    _, key = make_api_key(app)
    api = ApiClient(key)
    key_table = ApiKey._meta.db_table
    with CaptureQueriesContext(connection) as first:
        assert api.get("/api/v1/presence").status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert api.get("/api/v1/presence").status_code == 200
    assert any(key_table in q["sql"] for q in first.captured_queries)
    assert not any(key_table in q["sql"] for q in second.captured_queries)
    assert len(second.captured_queries) < len(first.captured_queries)


def test_a_key_revoked_by_another_process_stops_within_the_cache_time(app, fast_kpns):
    fast_kpns["API_KEY_CACHE_SECONDS"] = 0.3
    api_key, key = make_api_key(app)
    api = ApiClient(key)
    assert api.get("/api/v1/presence").status_code == 200
    # As another server process revokes it: this one's cache is not told.
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    assert api.get("/api/v1/presence").status_code == 200
    time.sleep(0.35)
    assert api.get("/api/v1/presence").status_code == 401


def test_a_key_edited_or_deleted_here_is_forgotten_at_once(app):
    api_key, key = make_api_key(app, scopes=["devices:read", "push:send"])
    api = ApiClient(key)
    assert api.get("/api/v1/presence").status_code == 200
    api_key.scopes = ["push:send"]
    api_key.save()  # as the admin does
    assert api.get("/api/v1/presence").status_code == 403
    api_key.delete()
    assert api.get("/api/v1/presence").status_code == 401


def test_admin_creates_a_key_shows_it_once_and_revokes_it(app):
    admin = User.objects.create_superuser("root", "", "pw")
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/admin/devices/apikey/add/",
        {"app": app.pk, "name": "backend", "scopes": ["push:send", "stats:read"]},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    api_key = ApiKey.objects.get(name="backend")
    assert api_key.scopes == ["push:send", "stats:read"]
    key = next(w for m in shown for w in m.split() if w.startswith("kpns_sk_"))
    assert api_key.key_hash == hash_token(key)
    # Never shown again.
    page = client.get(f"/admin/devices/apikey/{api_key.pk}/change/")
    assert page.status_code == 200 and key not in page.content.decode()
    assert key not in client.get("/admin/devices/apikey/").content.decode()
    client.post(  # post=yes: the answer of the revoke confirmation page
        "/admin/devices/apikey/",
        {"action": "revoke", "_selected_action": [api_key.pk], "post": "yes"},
    )
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert ApiClient(key).get("/api/v1/presence").status_code == 401


def test_marketers_cannot_see_api_keys(app):
    from campaigns.roles import marketer_group

    user = User.objects.create_user("m", password="pw", is_staff=True)
    user.groups.add(marketer_group())
    client = Client()
    client.force_login(user)
    assert client.get("/admin/devices/apikey/").status_code == 403
