"""App-reported events about a received push: POST /api/v1/device/events
with the device's token (devices.registry.message_events)."""

import uuid

import pytest

from devices.delivery import pushes
from devices.models import MessageEvent
from tests.factories import make_device

pytestmark = pytest.mark.django_db


def post(client, token, body):
    return client.post(
        "/api/v1/device/events",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token}",
    )


def test_an_event_is_counted_once_per_device_message_and_name(client, app):
    device, token = make_device(app)
    message, _ = pushes.push_to_devices(app=app, device_ids=[device.pk], title="m")
    body = {"message_id": str(message.pk), "name": "crash"}
    first = post(client, token, body)
    assert first.status_code == 200, first.content
    assert first.json() == {"recorded": True}
    assert post(client, token, body).json() == {"recorded": False}
    assert MessageEvent.objects.filter(message=message, name="crash").count() == 1


def test_a_push_the_device_never_got_is_a_404_and_a_bad_name_a_400(client, app):
    device, token = make_device(app)
    other, _ = make_device(app)
    message, _ = pushes.push_to_devices(app=app, device_ids=[other.pk], title="m")
    missing = post(client, token, {"message_id": str(message.pk), "name": "crash"})
    assert missing.status_code == 404
    assert missing["Content-Type"].startswith("application/problem+json")
    unknown = post(client, token, {"message_id": str(uuid.uuid4()), "name": "crash"})
    assert unknown.status_code == 404
    mine, _ = pushes.push_to_devices(app=app, device_ids=[device.pk], title="m")
    bad = post(client, token, {"message_id": str(mine.pk), "name": "Crash Now"})
    assert bad.status_code == 400
    assert "name" in bad.json()["errors"]
    anonymous = client.post(
        "/api/v1/device/events",
        {"message_id": str(mine.pk), "name": "crash"},
        content_type="application/json",
    )
    assert anonymous.status_code == 401
    assert not MessageEvent.objects.exists()
