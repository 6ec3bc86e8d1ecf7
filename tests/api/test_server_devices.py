"""Server-side device endpoints: list, filters, pages, read, update, unregister."""

import pytest

from devices.models import Device
from tests.api.conftest import ApiClient
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db


def test_server_registers_a_device_and_gets_its_token_once(api, app):
    response = api.post(
        "/api/v1/devices",
        {"platform": "ios", "alias": "user-1", "tags": ["vip"], "attributes": {"a": 1}},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["token"] and body["alias"] == "user-1" and body["tags"] == ["vip"]
    assert Device.objects.get(pk=body["id"]).app == app
    assert "token" not in api.get(f"/api/v1/devices/{body['id']}").json()


def test_list_filters_by_alias_tag_platform_and_online(api, app):
    a, _ = make_device(app, alias="alice", tags=["vip"], platform="ios")
    b, _ = make_device(app, alias="bob", tags=["vip", "beta"], platform="web")
    c, _ = make_device(app, alias="alice", platform="web")
    Device.objects.filter(pk=b.pk).update(node="n1", connection_id="c1")

    def ids(query: str) -> set[str]:
        response = api.get(f"/api/v1/devices{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("") == {str(a.pk), str(b.pk), str(c.pk)}
    assert ids("?alias=alice") == {str(a.pk), str(c.pk)}
    assert ids("?tag=vip") == {str(a.pk), str(b.pk)}
    assert ids("?tag=vip&platform=web") == {str(b.pk)}
    assert ids("?online=true") == {str(b.pk)}
    assert ids("?online=false") == {str(a.pk), str(c.pk)}
    row = api.get("/api/v1/devices?alias=bob").json()["results"][0]
    assert row["online"] is True and row["tags"] == ["beta", "vip"]


def test_list_pages_with_a_cursor_and_sees_every_device_once(api, app):
    made = {str(make_device(app)[0].pk) for _ in range(7)}
    seen: list[str] = []
    url = "/api/v1/devices?limit=3"
    pages = 0
    while url:
        body = api.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 3 and sorted(seen) == sorted(made)


def test_bad_filters_are_400_naming_the_field(api):
    response = api.get("/api/v1/devices?platform=toaster&online=maybe")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"platform", "online"}
    assert api.get("/api/v1/devices?cursor=garbage").status_code == 400


def test_read_update_and_unregister(api, app):
    device, token = make_device(app, alias="u1", tags=["a"])
    path = f"/api/v1/devices/{device.pk}"
    assert api.get(path).json()["alias"] == "u1"
    response = api.patch(
        path, {"alias": "u2", "tags": ["b", "c"], "attributes": {"plan": "pro"}}
    )
    assert response.status_code == 200, response.content
    assert response.json()["tags"] == ["b", "c"]
    device.refresh_from_db()
    assert (device.alias, device.attributes) == ("u2", {"plan": "pro"})
    bad = api.patch(path, {"tags": ["x"] * 0 + [f"t{i}" for i in range(51)]})
    assert bad.status_code == 400 and "tags" in bad.json()["errors"]
    bad = api.patch(path, {"timezone": "Mars/Olympus"})
    assert bad.json()["errors"] == {"timezone": ["Unknown time zone 'Mars/Olympus'."]}
    assert api.delete(path).status_code == 204
    device.refresh_from_db()
    assert not device.is_active and device.revoked_at is not None
    # Unregistered: gone for the API, and its token no longer works.
    assert api.get(path).status_code == 404
    assert api.delete(path).status_code == 404
    assert (
        api.client.get("/api/v1/device", HTTP_AUTHORIZATION=f"Device {token}")
    ).status_code == 401


def test_a_key_cannot_see_or_touch_another_apps_devices(api, app, other_app):
    theirs, _ = make_device(other_app, alias="same")
    mine, _ = make_device(app, alias="same")
    path = f"/api/v1/devices/{theirs.pk}"
    assert api.get(path).status_code == 404
    assert api.patch(path, {"alias": "x"}).status_code == 404
    assert api.delete(path).status_code == 404
    assert Device.objects.get(pk=theirs.pk).is_active
    listed = [
        row["id"] for row in api.get("/api/v1/devices?alias=same").json()["results"]
    ]
    assert listed == [str(mine.pk)]
    unknown = api.get("/api/v1/devices/00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404
    assert unknown["Content-Type"] == "application/problem+json"


def test_presence_counts_online_devices_of_the_key_app_only(api, app, other_app):
    on, _ = make_device(app, alias="u1")
    make_device(app, alias="u1")
    theirs, _ = make_device(other_app, alias="u1")
    Device.objects.filter(pk__in=[on.pk, theirs.pk]).update(node="n1")
    body = api.get("/api/v1/presence").json()
    assert body["online"] == 1 and [d["id"] for d in body["devices"]] == [str(on.pk)]
    assert api.get("/api/v1/presence?alias=nobody").json() == {
        "online": 0,
        "devices": [],
    }
    assert api.get("/api/v1/presence?limit=5000").status_code == 400


def test_read_only_key_cannot_write_devices(app):
    device, _ = make_device(app)
    api = ApiClient(make_api_key(app, scopes=["devices:read"])[1])
    assert api.get(f"/api/v1/devices/{device.pk}").status_code == 200
    assert api.patch(f"/api/v1/devices/{device.pk}", {"alias": "x"}).status_code == 403
    assert api.delete(f"/api/v1/devices/{device.pk}").status_code == 403
