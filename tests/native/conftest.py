"""Native push fixtures: local provider receivers and the settings that
point KPNS at them."""

from datetime import timedelta

import pytest
from django.db import connections
from django.db.models import F
from django.utils import timezone

from devices.models import Delivery, Device, Message
from devices.native import dispatch, services
from devices.native.dispatch import NativeDelivery, NativeResult, ProviderKeys
from devices.native.message import NativeMessage
from devices.native.models import NativeAttempt
from tests.e2e.conftest import redis_url  # noqa: F401 - the shared fixture
from tests.native.receivers import ApnsService, FcmService, WebPushService
from tests.reliability.conftest import postgres_only  # noqa: F401 - the fixture


@pytest.fixture
def webpush_service():
    service = WebPushService()
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def fcm_service():
    service = FcmService()
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def apns_service():
    service = ApnsService()
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(autouse=True)
def native_settings(settings):
    """Fast retries and a breaker that opens after 3 failures for 0.5 s."""
    settings.KPNS = {
        **settings.KPNS,
        "WEBPUSH_HOSTS": ["127.0.0.1"],
        "NATIVE_BACKOFF_SECONDS": 0.05,
        "NATIVE_RETRY_INLINE_MAX_SECONDS": 5.0,
        "NATIVE_BREAKER_FAILURES": 3,
        "NATIVE_BREAKER_COOLDOWN_SECONDS": 0.5,
        "NATIVE_TIMEOUT_SECONDS": 5.0,
    }
    return settings


@pytest.fixture
def point_at(settings):
    """Point the FCM and APNs settings at local receivers."""

    def point(fcm: FcmService | None = None, apns: ApnsService | None = None) -> None:
        kpns = dict(settings.KPNS)
        if fcm is not None:
            kpns["FCM_BASE_URL"] = fcm.url
            kpns["FCM_TOKEN_URL"] = f"{fcm.url}/token"
        if apns is not None:
            kpns["APNS_BASE_URL_PRODUCTION"] = apns.url
            kpns["APNS_BASE_URL_SANDBOX"] = apns.url
        settings.KPNS = kpns

    return point


@pytest.fixture
async def native():
    """The per-loop dispatcher, closed after the test."""
    yield dispatch.dispatcher()
    await dispatch.dispatcher_close()


def make_delivery(device: Device, **fields) -> Delivery:
    """A message and its delivery row for one device. Written here with the
    ORM: the inbox's write path is not part of the native package."""
    fields.setdefault("title", "Hello")
    fields.setdefault("expires_at", timezone.now() + timedelta(hours=1))
    message = Message.objects.create(app=device.app, **fields)
    Device.objects.filter(pk=device.pk).update(last_seq=F("last_seq") + 1)
    device.refresh_from_db()
    return Delivery.objects.create(
        message=message,
        device=device,
        seq=device.last_seq,
        expires_at=message.expires_at,
    )


def record_attempt(delivery: Delivery, channel: str = "webpush", status="accepted"):
    """A provider's answer for a delivery, recorded as native_send records
    it (attempt row and channel counters in one transaction)."""
    message = NativeMessage(id=str(delivery.message_id), seq=delivery.seq, title="t")
    native = NativeDelivery(
        kind=channel, message=message, keys=ProviderKeys(), delivery_id=delivery.pk
    )
    services.native_results_record(results=[NativeResult(native, status, attempts=1)])


def channel_split_counted(message_id) -> dict[str, dict[str, int]]:
    """The channel split counted from the rows: the oracle the counters
    (devices.native.channelcounts) must equal."""
    split = {"socket": {"delivered": 0}}
    for channel in ("webpush", "fcm", "apns"):
        attempts = NativeAttempt.objects.filter(
            delivery__message_id=message_id, channel=channel
        )
        split[channel] = {
            "accepted": attempts.filter(status="accepted").count(),
            "failed": attempts.filter(status="failed").count(),
            "retrying": attempts.filter(status="retry").count(),
            "delivered": attempts.filter(device_seen_at__isnull=False).count(),
        }
    delivered = Delivery.objects.filter(
        message_id=message_id, delivered_at__isnull=False
    ).count()
    natively = sum(split[c]["delivered"] for c in ("webpush", "fcm", "apns"))
    split["socket"]["delivered"] = delivered - natively
    return split


def claim_in_thread(loop, *, limit: int):
    """``loop.scanner.claim_due`` on a worker thread, as the policy loop
    runs it, giving the thread's database connection back to the pool
    after (a dead thread's connection would stay checked out)."""
    try:
        return loop.scanner.claim_due(limit=limit)
    finally:
        connections.close_all()
