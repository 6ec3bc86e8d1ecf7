"""Per-message wake mode: an API push, a batch item or a campaign says
notification or data-only wake-up for the native channel, else the app's
setting applies; the local FCM and APNs receivers see the difference."""

import asyncio
import json

import pytest
from django.test import Client
from django.utils import timezone

from campaigns import lifecycle, sender
from campaigns.models import Campaign
from devices.native import fallback, services
from devices.native.models import AppProviderConfig
from tests.factories import make_api_key, make_device
from tests.native.conftest import claim_in_thread

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "b" * 64


@pytest.fixture
def phone(app, fcm_service, apns_service, point_at):
    """An offline device with an FCM token and an APNs token, and the app's
    keys of both local receivers."""
    point_at(fcm=fcm_service, apns=apns_service)
    AppProviderConfig.objects.filter(app=app).update(
        fcm_project_id=fcm_service.project_id,
        apns_key_id=apns_service.key_id,
        apns_team_id=apns_service.team_id,
        apns_bundle_id=apns_service.bundle_id,
    )
    config = AppProviderConfig.objects.get(app=app)
    config.fcm_service_account = json.dumps(fcm_service.service_account())
    config.apns_key = apns_service.p8()
    config.save()
    device, _ = make_device(app, platform="android")
    services.credential_register(device=device, kind="fcm", token="fcm-token-1")
    services.credential_register(
        device=device, kind="apns", token=TOKEN, environment="sandbox"
    )
    return device


def api(app):
    _, key = make_api_key(app, scopes=["push:send", "campaigns:write"])
    client = Client()

    def post(path, body):
        answer = client.post(
            path,
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )
        assert answer.status_code in (200, 201, 202), answer.content
        return answer.json()

    return post


def one_look() -> None:
    """What the scheduler's policy loop does once: claim what is due, send."""
    loop = fallback.NativeFallback()

    async def look() -> None:
        claimed = await asyncio.to_thread(claim_in_thread, loop, limit=50)
        await loop._send(claimed)  # noqa: SLF001

    asyncio.run(look())


def seen(fcm_service, apns_service) -> dict[str, tuple]:
    """Per message id, what each receiver got: FCM has a notification or
    not; APNs' push type, priority and aps."""
    found: dict[str, list] = {}
    for record in fcm_service.received:
        if record.json:
            message = record.json["message"]
            kpns = json.loads(message["data"]["kpns"])
            found.setdefault(kpns["id"], [None, None])[0] = "notification" in message
    for record in apns_service.received:
        headers = record.headers
        found.setdefault(record.json["kpns"]["id"], [None, None])[1] = (
            headers["apns-push-type"],
            headers["apns-priority"],
            record.json["aps"],
        )
    assert not fcm_service.errors and not apns_service.errors
    return {key: tuple(value) for key, value in found.items()}


ALERT = ("alert", "5", {"alert": {"title": "Hi"}})
BACKGROUND = ("background", "5", {"content-available": 1})


def test_an_api_push_overrides_the_apps_wake_mode(
    app, phone, fcm_service, apns_service
):
    post = api(app)
    data = post(
        "/api/v1/pushes",
        {"device_ids": [str(phone.pk)], "title": "Hi", "wake_mode": "data"},
    )["message_id"]
    default = post("/api/v1/pushes", {"device_ids": [str(phone.pk)], "title": "Hi"})
    one_look()
    assert seen(fcm_service, apns_service) == {
        data: (False, BACKGROUND),
        default["message_id"]: (True, ALERT),
    }


def test_the_apps_setting_is_the_default_and_a_message_can_ask_for_more(
    app, phone, fcm_service, apns_service
):
    AppProviderConfig.objects.filter(app=app).update(wake_mode="data")
    post = api(app)
    default = post("/api/v1/pushes", {"device_ids": [str(phone.pk)], "title": "Hi"})
    full = post(
        "/api/v1/pushes",
        {"device_ids": [str(phone.pk)], "title": "Hi", "wake_mode": "notification"},
    )
    one_look()
    assert seen(fcm_service, apns_service) == {
        default["message_id"]: (False, BACKGROUND),
        full["message_id"]: (True, ALERT),
    }


def test_each_batch_item_has_its_own_wake_mode(app, phone, fcm_service, apns_service):
    post = api(app)
    target = {"device_ids": [str(phone.pk)], "title": "Hi"}
    results = post(
        "/api/v1/pushes/batch",
        {"messages": [{**target, "wake_mode": "data"}, target]},
    )["results"]
    one_look()
    assert seen(fcm_service, apns_service) == {
        results[0]["message_id"]: (False, BACKGROUND),
        results[1]["message_id"]: (True, ALERT),
    }


def test_a_campaign_carries_its_wake_mode(app, phone, fcm_service, apns_service):
    post = api(app)
    created = post(
        "/api/v1/campaigns",
        {"name": "Wake", "title": "Hi", "wake_mode": "data", "audience": {}},
    )
    assert created["wake_mode"] == "data"
    campaign = Campaign.objects.get(pk=created["id"])
    lifecycle.campaign_schedule_now(campaign=campaign)
    assert sender.send_due(now=timezone.now()) >= 1
    campaign.refresh_from_db()
    one_look()
    assert seen(fcm_service, apns_service) == {
        str(campaign.message_id): (False, BACKGROUND)
    }


def test_an_unknown_wake_mode_is_refused(app, phone):
    _, key = make_api_key(app, scopes=["push:send"])
    answer = Client().post(
        "/api/v1/pushes",
        data={"device_ids": [str(phone.pk)], "title": "Hi", "wake_mode": "loud"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert answer.status_code == 400
    assert "wake_mode" in answer.json()["errors"]
