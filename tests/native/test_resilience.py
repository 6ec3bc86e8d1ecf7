"""Circuit breaker and concurrency limit, against a failing or slow receiver."""

import asyncio

from devices.native.dispatch import NativeDelivery, ProviderKeys, native_send
from devices.native.message import NativeMessage
from devices.native.webpush import vapid_keys_generate
from tests.native.receivers import Reply

MESSAGE = NativeMessage(id="m", seq=1, title="t")
_, VAPID = vapid_keys_generate()


def delivery(sub) -> NativeDelivery:
    return NativeDelivery(
        kind="webpush",
        message=MESSAGE,
        keys=ProviderKeys(vapid_private_pem=VAPID),
        endpoint=sub.endpoint,
        p256dh=sub.p256dh,
        auth=sub.auth,
    )


async def test_breaker_opens_after_failures_and_closes_after_cooldown(
    webpush_service, native, settings
):
    settings.KPNS = {**settings.KPNS, "NATIVE_MAX_ATTEMPTS": 1}
    sub = webpush_service.subscribe()
    webpush_service.reply_always(Reply(500))
    for _ in range(3):
        [result] = await native_send(deliveries=[delivery(sub)], record=False)
        assert (result.status, result.reason) == (
            "failed",
            "gave up after 1 attempts: HTTP 500",
        )
    # Open: the next delivery fails fast, without a request.
    [result] = await native_send(deliveries=[delivery(sub)], record=False)
    assert (result.status, result.reason) == ("retry", "circuit open")
    assert result.next_retry_at is not None
    assert len(webpush_service.received) == 3
    # After the cool-down one probe goes through; it succeeds and closes it.
    await asyncio.sleep(0.55)
    webpush_service.reply_always(None)
    [probe] = await native_send(deliveries=[delivery(sub)], record=False)
    assert probe.status == "accepted"
    results = await native_send(deliveries=[delivery(sub)] * 3, record=False)
    assert [r.status for r in results] == ["accepted"] * 3
    assert native.breaker(f"webpush {webpush_service.url}").state == "closed"


async def test_a_failed_probe_opens_the_breaker_again(
    webpush_service, native, settings
):
    settings.KPNS = {**settings.KPNS, "NATIVE_MAX_ATTEMPTS": 1}
    sub = webpush_service.subscribe()
    webpush_service.reply_always(Reply(500))
    await native_send(deliveries=[delivery(sub)] * 3, record=False)
    await asyncio.sleep(0.55)
    await native_send(deliveries=[delivery(sub)], record=False)
    assert len(webpush_service.received) == 4
    [result] = await native_send(deliveries=[delivery(sub)], record=False)
    assert result.reason == "circuit open"
    assert len(webpush_service.received) == 4


async def test_concurrency_is_limited_per_provider(webpush_service, native, settings):
    settings.KPNS = {**settings.KPNS, "NATIVE_CONCURRENCY": 2}
    sub = webpush_service.subscribe()
    webpush_service.reply_always(Reply(201, delay=0.1))
    results = await native_send(deliveries=[delivery(sub)] * 6, record=False)
    assert [r.status for r in results] == ["accepted"] * 6
    assert webpush_service.max_in_flight == 2


async def test_a_slow_provider_does_not_hold_another(
    webpush_service, apns_service, point_at, native, settings
):
    """A push service that takes 1 s per request leaves APNs sends fast."""
    from tests.native.test_apns import delivery as apns_delivery

    point_at(apns=apns_service)
    settings.KPNS = {**settings.KPNS, "NATIVE_CONCURRENCY": 1}
    sub = webpush_service.subscribe()
    webpush_service.reply_always(Reply(201, delay=1.0))
    slow = asyncio.ensure_future(
        native_send(deliveries=[delivery(sub)] * 2, record=False)
    )
    await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    [result] = await native_send(deliveries=[apns_delivery(apns_service)], record=False)
    assert result.status == "accepted"
    assert asyncio.get_running_loop().time() - started < 0.5
    assert not slow.done()
    await slow
