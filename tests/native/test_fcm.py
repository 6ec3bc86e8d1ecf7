"""FCM HTTP v1 against a local OAuth2 token endpoint and messages:send."""

import json

from devices.native.dispatch import NativeDelivery, ProviderKeys, native_send
from devices.native.message import NativeMessage, app_payload
from tests.native.receivers import Reply, fcm_error

MESSAGE = NativeMessage(
    id="6f1c2d8e-0a4b-4c3d-8e2f-1a2b3c4d5e6f",
    seq=3,
    title="Hi",
    body="There",
    data={"k": [1, 2]},
    collapse_key="news",
    ttl_seconds=600,
    priority="high",
)


def delivery(service, wake="notification", message=MESSAGE) -> NativeDelivery:
    return NativeDelivery(
        kind="fcm",
        message=message,
        keys=ProviderKeys(
            fcm_project_id=service.project_id, fcm_account=service.service_account()
        ),
        token="fcm-registration-token-1",
        wake=wake,
    )


async def test_message_carries_id_seq_and_android_options(
    fcm_service, point_at, native
):
    point_at(fcm=fcm_service)
    results = await native_send(
        deliveries=[delivery(fcm_service), delivery(fcm_service)], record=False
    )
    assert [r.status for r in results] == ["accepted", "accepted"], fcm_service.errors
    # One token exchange serves both sends (cached until it expires).
    assert fcm_service.exchanges == 1
    message = fcm_service.received[-1].json["message"]
    assert message["token"] == "fcm-registration-token-1"
    assert message["notification"] == {"title": "Hi", "body": "There"}
    assert json.loads(message["data"]["kpns"]) == app_payload(MESSAGE)
    assert message["android"] == {
        "ttl": "600s",
        "priority": "HIGH",
        "collapse_key": "news",
    }
    assert fcm_service.errors == []


async def test_data_wake_up_has_no_notification(fcm_service, point_at, native):
    point_at(fcm=fcm_service)
    [result] = await native_send(
        deliveries=[delivery(fcm_service, wake="data")], record=False
    )
    assert result.status == "accepted"
    message = fcm_service.received[-1].json["message"]
    assert "notification" not in message
    assert json.loads(message["data"]["kpns"])["id"] == MESSAGE.id


async def test_unregistered_token_is_an_invalid_credential(
    fcm_service, point_at, native
):
    point_at(fcm=fcm_service)
    fcm_service.reply_next(fcm_error(404, "NOT_FOUND", "UNREGISTERED"))
    [result] = await native_send(deliveries=[delivery(fcm_service)], record=False)
    assert (result.status, result.deactivate, result.reason) == (
        "failed",
        True,
        "UNREGISTERED",
    )


async def test_500_is_retried_with_backoff(fcm_service, point_at, native):
    point_at(fcm=fcm_service)
    fcm_service.reply_next(fcm_error(500, "INTERNAL"), fcm_error(503, "UNAVAILABLE"))
    [result] = await native_send(deliveries=[delivery(fcm_service)], record=False)
    assert (result.status, result.attempts) == ("accepted", 3)
    sends = [r for r in fcm_service.received if r.path != "/token"]
    # Waits of about 0.05 s, then 0.1 s (x 0.8-1.2 jitter).
    assert sends[1].at - sends[0].at >= 0.04
    assert sends[2].at - sends[1].at >= 0.08


async def test_quota_429_honours_retry_after(fcm_service, point_at, native):
    point_at(fcm=fcm_service)
    fcm_service.reply_next(
        Reply(
            **{
                **fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED").__dict__,
                "headers": {"Retry-After": "1"},
            }
        )
    )
    [result] = await native_send(deliveries=[delivery(fcm_service)], record=False)
    assert (result.status, result.attempts) == ("accepted", 2)
    first, second = [r for r in fcm_service.received if r.path != "/token"]
    assert second.at - first.at >= 1.0


async def test_a_refused_access_token_is_exchanged_again(fcm_service, point_at, native):
    point_at(fcm=fcm_service)
    await native_send(deliveries=[delivery(fcm_service)], record=False)
    fcm_service.tokens.clear()  # the provider revoked every token
    [result] = await native_send(deliveries=[delivery(fcm_service)], record=False)
    assert result.status == "accepted"
    assert fcm_service.exchanges == 2


async def test_payload_over_4_kib_fails_clearly(fcm_service, point_at, native):
    point_at(fcm=fcm_service)
    big = NativeMessage(id="x", seq=1, title="t", data={"b": "y" * 4100})
    [result] = await native_send(
        deliveries=[delivery(fcm_service, message=big)], record=False
    )
    assert result.status == "failed" and "fcm payload" in result.reason
    assert fcm_service.received == []
