"""Web Push against a local push service that checks VAPID and decrypts."""

import json
import time
from datetime import UTC, datetime

import pytest

from devices.native import webpush
from devices.native.dispatch import NativeDelivery, ProviderKeys, native_send
from devices.native.message import NativeMessage, app_payload
from tests.native.receivers import Reply

MESSAGE = NativeMessage(
    id="0b8a7c3e-5d8f-4c1e-9f5e-2b1e0e9a6f10",
    seq=7,
    title="Sale",
    body="50% off",
    data={"order": 42},
    collapse_key="sale:2024/summer",
    ttl_seconds=3600,
    priority="high",
)


def delivery(subscription, message=MESSAGE, **fields) -> NativeDelivery:
    _, private = webpush.vapid_keys_generate()
    return NativeDelivery(
        kind="webpush",
        message=message,
        keys=ProviderKeys(vapid_private_pem=private, vapid_subject="mailto:a@b.c"),
        endpoint=subscription.endpoint,
        p256dh=subscription.p256dh,
        auth=subscription.auth,
        **fields,
    )


async def test_push_service_decrypts_the_message_sent(webpush_service, native):
    sub = webpush_service.subscribe()
    [result] = await native_send(deliveries=[delivery(sub)], record=False)
    assert result.status == "accepted", (result, webpush_service.errors)
    [received] = webpush_service.received
    assert json.loads(received.plaintext) == app_payload(MESSAGE)
    assert json.loads(received.plaintext)["seq"] == 7
    assert received.headers["ttl"] == "3600"
    assert received.headers["urgency"] == "high"
    # The collapse key has '/' and ':', outside Topic's alphabet: hashed.
    assert received.headers["topic"] == webpush.topic_of("sale:2024/summer")
    assert len(received.headers["topic"]) == 32
    assert webpush_service.errors == []


async def test_each_push_is_encrypted_with_a_fresh_key(webpush_service, native):
    sub = webpush_service.subscribe()
    d = delivery(sub)
    await native_send(deliveries=[d, d], record=False)
    first, second = webpush_service.received
    assert first.plaintext == second.plaintext
    assert first.body[21:86] != second.body[21:86]  # the sender keys differ


async def test_gone_subscription_is_an_invalid_credential(webpush_service, native):
    sub = webpush_service.subscribe()
    webpush_service.reply_next(Reply(410))
    [result] = await native_send(deliveries=[delivery(sub)], record=False)
    assert (result.status, result.deactivate, result.status_code) == (
        "failed",
        True,
        410,
    )
    assert len(webpush_service.received) == 1


async def test_429_waits_its_retry_after_then_succeeds(webpush_service, native):
    sub = webpush_service.subscribe()
    webpush_service.reply_next(Reply(429, headers={"Retry-After": "1"}))
    [result] = await native_send(deliveries=[delivery(sub)], record=False)
    assert (result.status, result.attempts) == ("accepted", 2)
    first, second = webpush_service.received
    assert second.at - first.at >= 1.0


async def test_a_long_retry_after_is_left_to_the_scheduler(webpush_service, native):
    sub = webpush_service.subscribe()
    webpush_service.reply_next(Reply(503, headers={"Retry-After": "120"}))
    before = time.time()
    [result] = await native_send(deliveries=[delivery(sub)], record=False)
    assert result.status == "retry"
    assert result.attempts == 1
    wait = (result.next_retry_at - datetime.fromtimestamp(before, UTC)).total_seconds()
    assert 119 <= wait <= 122
    assert len(webpush_service.received) == 1


async def test_a_payload_over_the_limit_fails_without_a_request(
    webpush_service, native
):
    sub = webpush_service.subscribe()
    big = NativeMessage(id="x", seq=1, title="t", data={"blob": "x" * 4000})
    [result] = await native_send(deliveries=[delivery(sub, big)], record=False)
    assert result.status == "failed"
    assert "over its 3993" in result.reason
    assert webpush_service.received == []


@pytest.mark.parametrize(
    ("key", "topic"), [("promo_1", "promo_1"), ("a" * 40, None), ("x y", None)]
)
def test_topic_is_the_collapse_key_or_its_digest(key, topic):
    assert webpush.topic_of(key) == (topic or webpush.topic_of(key))
    assert len(webpush.topic_of(key)) <= 32
    assert webpush.topic_of(key) == webpush.topic_of(key)
