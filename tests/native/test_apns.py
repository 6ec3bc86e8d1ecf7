"""APNs against a local HTTP/2 provider API that checks the JWT and headers."""

import time

from devices.native.apns import ApnsKey
from devices.native.dispatch import NativeDelivery, ProviderKeys, native_send
from devices.native.message import NativeMessage, app_payload
from tests.native.receivers import Reply

TOKEN = "a" * 64
MESSAGE = NativeMessage(
    id="9e3c1b2a-7d6f-4e5a-8b9c-0d1e2f3a4b5c",
    seq=11,
    title="Order shipped",
    body="Arrives Monday",
    data={"order": 7},
    collapse_key="order-7",
    ttl_seconds=7200,
    priority="high",
)


def delivery(service, wake="notification", token=TOKEN) -> NativeDelivery:
    key = ApnsKey(service.p8(), service.key_id, service.team_id, service.bundle_id)
    return NativeDelivery(
        kind="apns",
        message=MESSAGE,
        keys=ProviderKeys(apns_key=key),
        token=token,
        wake=wake,
        environment="sandbox",
    )


async def test_alert_over_http2_with_apns_headers(apns_service, point_at, native):
    point_at(apns=apns_service)
    [result] = await native_send(deliveries=[delivery(apns_service)], record=False)
    assert result.status == "accepted", apns_service.errors
    [received] = apns_service.received
    headers = received.headers
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-topic"] == apns_service.bundle_id
    assert headers["apns-collapse-id"] == "order-7"
    assert headers["apns-id"] == MESSAGE.id
    assert abs(int(headers["apns-expiration"]) - (time.time() + 7200)) < 5
    assert received.json["aps"] == {
        "alert": {"title": "Order shipped", "body": "Arrives Monday"}
    }
    assert received.json["kpns"] == app_payload(MESSAGE)


async def test_background_wake_up_is_priority_5(apns_service, point_at, native):
    point_at(apns=apns_service)
    [result] = await native_send(
        deliveries=[delivery(apns_service, wake="data")], record=False
    )
    assert result.status == "accepted", apns_service.errors
    [received] = apns_service.received
    assert received.headers["apns-push-type"] == "background"
    assert received.headers["apns-priority"] == "5"
    assert received.json["aps"] == {"content-available": 1}


async def test_the_provider_jwt_is_reused(apns_service, point_at, native):
    point_at(apns=apns_service)
    await native_send(deliveries=[delivery(apns_service)] * 3, record=False)
    tokens = {r.headers["authorization"] for r in apns_service.received}
    assert len(apns_service.received) == 3 and len(tokens) == 1


async def test_bad_device_token_and_unregistered_are_invalid(
    apns_service, point_at, native
):
    point_at(apns=apns_service)
    apns_service.reply_next(
        Reply(400, {"reason": "BadDeviceToken"}),
        Reply(410, {"reason": "Unregistered", "timestamp": 1}),
    )
    results = await native_send(
        deliveries=[delivery(apns_service), delivery(apns_service)], record=False
    )
    assert sorted(r.reason for r in results) == ["BadDeviceToken", "Unregistered"]
    assert all(r.deactivate and r.status == "failed" for r in results)


async def test_too_many_requests_is_retried(apns_service, point_at, native):
    point_at(apns=apns_service)
    apns_service.reply_next(
        Reply(429, {"reason": "TooManyRequests"}, headers={"Retry-After": "1"})
    )
    [result] = await native_send(deliveries=[delivery(apns_service)], record=False)
    assert (result.status, result.attempts) == ("accepted", 2)
    first, second = apns_service.received
    assert second.at - first.at >= 1.0


async def test_thousands_of_streams_on_one_connection_all_arrive(
    apns_service, point_at, native
):
    """Past 1,000 requests on one HTTP/2 connection (where hypercorn used to
    close it, cutting the streams in flight: the client saw WriteError, the
    receiver empty bodies), every push is accepted and read whole."""
    point_at(apns=apns_service)
    sends = [delivery(apns_service)] * 2500
    results = await native_send(deliveries=sends, record=False)
    assert {r.status for r in results} == {"accepted"}
    assert len(apns_service.received) == 2500
    assert apns_service.errors == [] and apns_service.disconnects == 0
    assert all(r.json["kpns"]["seq"] == MESSAGE.seq for r in apns_service.received)
