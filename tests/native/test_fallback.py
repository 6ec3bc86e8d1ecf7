"""The delivery policy (devices.native.fallback): which deliveries go to a
provider, claimed once, and the receipts and stats of each channel."""

import asyncio
import json
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import Client
from django.utils import timezone

from campaigns.selectors import RESULT_COLUMNS
from devices.models import Delivery, DeliveryStatus, Device
from devices.native import fallback, selectors, services
from devices.native.models import (
    AppProviderConfig,
    AttemptStatus,
    NativeAttempt,
    PushCredential,
)
from tests.factories import make_device
from tests.native.conftest import (
    channel_split_counted,
    claim_in_thread,
    make_delivery,
    record_attempt,
)
from tests.native.receivers import Reply, WebPushService

pytestmark = pytest.mark.django_db(transaction=True)


def subscribed(app, service: WebPushService, **fields):
    device, token = make_device(app, platform="web", **fields)
    sub = service.subscribe()
    services.credential_register(
        device=device,
        kind="webpush",
        endpoint=sub.endpoint,
        p256dh=sub.p256dh,
        auth=sub.auth,
    )
    return device, token


def online(device: Device) -> None:
    Device.objects.filter(pk=device.pk).update(node="node-a", connection_id="c1")


def aged(delivery: Delivery, seconds: float) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=F("created_at") - timedelta(seconds=seconds)
    )


def due_ids() -> list[int]:
    return fallback.fallback_candidates(now=timezone.now(), after_id=None, limit=100)


def test_offline_device_with_credential_is_due_at_once(app, webpush_service):
    device, _ = subscribed(app, webpush_service)
    delivery = make_delivery(device)
    bare, _ = make_device(app)  # no credential: the socket's only
    make_delivery(bare)
    assert due_ids() == [delivery.pk]


def test_online_device_is_due_only_after_its_apps_grace(app, webpush_service):
    device, _ = subscribed(app, webpush_service)
    online(device)
    delivery = make_delivery(device)
    assert due_ids() == []
    aged(delivery, 4)
    assert due_ids() == []
    aged(delivery, 2)  # 6 s old, grace 5 s
    assert due_ids() == [delivery.pk]
    AppProviderConfig.objects.filter(app=app).update(grace_seconds=30)
    assert due_ids() == []


def test_acked_expired_and_attempted_deliveries_are_not_due(app, webpush_service):
    device, _ = subscribed(app, webpush_service)
    acked = make_delivery(device)
    Delivery.objects.filter(pk=acked.pk).update(status=DeliveryStatus.DELIVERED)
    expired = make_delivery(device)
    Delivery.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    attempted = make_delivery(device)
    record_attempt(attempted)
    assert due_ids() == []


def test_without_any_active_credential_nothing_is_read(
    app, webpush_service, django_assert_num_queries
):
    bare, _ = make_device(app)
    make_delivery(bare)
    device, _ = subscribed(app, webpush_service)
    delivery = make_delivery(device)
    credential = PushCredential.objects.get(device=device)
    services.credential_deactivate(credential_id=credential.pk, reason="gone")
    # One look at the credentials, none at the open deliveries.
    with django_assert_num_queries(1):
        assert due_ids() == []
    assert (
        fallback.fallback_candidates(
            now=timezone.now(), after_id=delivery.pk - 1, limit=10
        )
        == []
    )


def test_incremental_look_reads_only_above_its_floor(app, webpush_service):
    device, _ = subscribed(app, webpush_service)
    old = make_delivery(device)
    new = make_delivery(device)
    ids = fallback.fallback_candidates(now=timezone.now(), after_id=old.pk, limit=10)
    assert ids == [new.pk]


def test_a_delivery_is_claimed_once_across_two_schedulers(app, webpush_service):
    device, _ = subscribed(app, webpush_service)
    delivery = make_delivery(device)
    first = fallback.fallback_claim(delivery_ids=[delivery.pk], now=timezone.now())
    second = fallback.fallback_claim(delivery_ids=[delivery.pk], now=timezone.now())
    assert [d.delivery_id for d in first] == [delivery.pk] and second == []
    assert due_ids() == []
    # A claim whose scheduler died comes due when its lease ends.
    later = timezone.now() + timedelta(seconds=121)
    again = fallback.retries_claim(now=later, limit=10)
    assert [(d.delivery_id, d.kind) for d in again] == [(delivery.pk, "webpush")]
    assert fallback.retries_claim(now=later, limit=10) == []


def test_the_loop_sends_once_with_the_same_id_and_seq(app, webpush_service):
    device, _ = subscribed(app, webpush_service)
    delivery = make_delivery(device, title="Sale")
    loop = fallback.NativeFallback()

    async def one_look() -> None:
        claimed = await asyncio.to_thread(claim_in_thread, loop, limit=10)
        await loop._send(claimed)  # noqa: SLF001

    asyncio.run(one_look())
    asyncio.run(one_look())  # nothing more is due
    assert len(webpush_service.received) == 1
    body = json.loads(webpush_service.received[0].plaintext)
    assert (body["id"], body["seq"], body["title"]) == (
        str(delivery.message_id),
        delivery.seq,
        "Sale",
    )
    attempt = NativeAttempt.objects.get(delivery=delivery)
    assert (attempt.status, attempt.attempts) == (AttemptStatus.ACCEPTED, 1)
    # Accepted is not delivered: the delivery stays open for the socket.
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING


def test_a_failing_provider_leaves_a_retry_the_next_look_sends(
    app, webpush_service, settings
):
    settings.KPNS = {**settings.KPNS, "NATIVE_RETRY_INLINE_MAX_SECONDS": 0.0}
    device, _ = subscribed(app, webpush_service)
    delivery = make_delivery(device)
    webpush_service.reply_next(Reply(500))
    loop = fallback.NativeFallback()

    async def one_look(now) -> None:
        claimed = await asyncio.to_thread(claim_in_thread, loop, limit=10)
        await loop._send(claimed)  # noqa: SLF001

    asyncio.run(one_look(None))
    attempt = NativeAttempt.objects.get(delivery=delivery)
    assert attempt.status == AttemptStatus.RETRY
    NativeAttempt.objects.filter(pk=attempt.pk).update(next_retry_at=timezone.now())
    asyncio.run(one_look(None))
    attempt.refresh_from_db()
    assert (attempt.status, attempt.attempts) == (AttemptStatus.ACCEPTED, 2)


def test_opened_from_the_service_worker_marks_the_delivery_and_the_channel(
    app, webpush_service
):
    device, token = subscribed(app, webpush_service)
    delivery = make_delivery(device)
    record_attempt(delivery)
    answer = Client().post(
        "/api/v1/device/opened",
        data={"id": str(delivery.message_id), "seq": delivery.seq},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token}",
    )
    assert answer.status_code == 204, answer.content
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.OPENED and delivery.delivered_at
    stats = selectors.channel_stats(delivery.message_id)
    assert stats["delivered_webpush"] == 1 and stats["delivered_socket"] == 0
    assert stats["accepted_webpush"] == 1
    split = selectors.channel_split(delivery.message_id)
    assert split == channel_split_counted(delivery.message_id)
    # Another device's token cannot open it.
    _, stranger = make_device(app)
    answer = Client().post(
        "/api/v1/device/opened",
        data={"id": str(delivery.message_id), "seq": delivery.seq},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {stranger}",
    )
    assert answer.status_code == 404


def test_stats_and_results_split_deliveries_by_channel(app, webpush_service):
    by_socket, _ = make_device(app)
    by_push, _ = subscribed(app, webpush_service)
    first = make_delivery(by_socket)
    message = first.message
    Delivery.objects.filter(pk=first.pk).update(
        status=DeliveryStatus.DELIVERED, delivered_at=timezone.now()
    )
    Device.objects.filter(pk=by_push.pk).update(last_seq=F("last_seq") + 1)
    second = Delivery.objects.create(
        message=message, device=by_push, seq=1, expires_at=message.expires_at
    )
    record_attempt(second)
    stats = selectors.channel_stats(message.id)
    assert (stats["delivered_socket"], stats["accepted_webpush"]) == (1, 1)
    assert stats["delivered_webpush"] == 0
    assert selectors.channel_split(message.id) == channel_split_counted(message.id)
    channels = dict(
        Delivery.objects.filter(message=message)
        .annotate(channel=selectors.delivery_channel())
        .values_list("device_id", "channel")
    )
    assert channels == {by_socket.pk: "socket", by_push.pk: "webpush"}
    assert RESULT_COLUMNS[-1] == "channel"


def test_service_worker_is_served_for_the_whole_site():
    answer = Client().get("/sw.js")
    assert answer.status_code == 200
    assert answer["Service-Worker-Allowed"] == "/"
    assert "javascript" in answer["Content-Type"]
    assert b"kpns:push" in answer.content
