"""What native_send records: attempts per delivery, dead credentials."""

import json

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from devices.native import selectors, services
from devices.native.dispatch import native_send
from devices.native.models import AppProviderConfig, NativeAttempt, PushCredential
from tests.factories import make_app, make_device
from tests.native.conftest import make_delivery
from tests.native.receivers import Reply

pytestmark = pytest.mark.django_db(transaction=True)


def _setup(webpush_service):
    app = make_app()
    device, _ = make_device(app, platform="web")
    sub = webpush_service.subscribe()
    credential = services.credential_register(
        device=device,
        kind="webpush",
        endpoint=sub.endpoint,
        p256dh=sub.p256dh,
        auth=sub.auth,
    )
    delivery = make_delivery(device, title="Hi", collapse_key="k")
    return credential, delivery


async def test_accepted_push_is_recorded_on_its_delivery(webpush_service, native):
    credential, delivery = await database_sync_to_async(_setup)(webpush_service)
    targets = await database_sync_to_async(selectors.native_deliveries)(
        delivery_ids=[delivery.pk]
    )
    assert [t.credential_id for t in targets] == [credential.pk]
    [result] = await native_send(deliveries=targets)
    assert result.status == "accepted"
    attempt = await NativeAttempt.objects.aget(delivery=delivery)
    assert (attempt.channel, attempt.status, attempt.attempts) == (
        "webpush",
        "accepted",
        1,
    )

    body = json.loads(webpush_service.received[0].plaintext)
    assert (body["id"], body["seq"]) == (str(delivery.message_id), delivery.seq)


async def test_gone_subscription_deactivates_the_credential(webpush_service, native):
    credential, delivery = await database_sync_to_async(_setup)(webpush_service)
    webpush_service.reply_next(Reply(410))
    targets = await database_sync_to_async(selectors.native_deliveries)(
        delivery_ids=[delivery.pk]
    )
    await native_send(deliveries=targets)
    credential = await PushCredential.objects.aget(pk=credential.pk)
    assert not credential.is_active
    assert credential.deactivated_at is not None
    assert "410" in credential.deactivation_reason
    attempt = await NativeAttempt.objects.aget(delivery=delivery)
    assert (attempt.status, attempt.status_code) == ("failed", 410)
    # An inactive credential is no longer a target.
    assert (
        await database_sync_to_async(selectors.native_deliveries)(
            delivery_ids=[delivery.pk]
        )
        == []
    )


async def test_deferred_retry_is_due_later_with_its_attempts(webpush_service, native):
    credential, delivery = await database_sync_to_async(_setup)(webpush_service)
    webpush_service.reply_next(Reply(429, headers={"Retry-After": "0"}))
    webpush_service.reply_next(Reply(503, headers={"Retry-After": "60"}))
    targets = await database_sync_to_async(selectors.native_deliveries)(
        delivery_ids=[delivery.pk]
    )
    [result] = await native_send(deliveries=targets)
    assert (result.status, result.attempts) == ("retry", 2)
    attempt = await NativeAttempt.objects.aget(delivery=delivery)
    assert attempt.status == "retry" and attempt.next_retry_at is not None
    # Not due yet; once due, it comes back with its two attempts counted.
    assert await database_sync_to_async(selectors.native_retries_due)() == []
    await NativeAttempt.objects.filter(pk=attempt.pk).aupdate(
        next_retry_at=attempt.created_at
    )
    [due] = await database_sync_to_async(selectors.native_retries_due)()
    assert (due.delivery_id, due.attempts) == (delivery.pk, 2)


@pytest.mark.django_db
def test_provider_secrets_are_sealed_in_the_database():
    app = make_app()
    config = AppProviderConfig.objects.get(app=app)
    config.fcm_service_account = '{"private_key": "PLAINTEXT-SECRET"}'
    config.apns_key = "-----BEGIN PRIVATE KEY-----\nAPNS-SECRET\n"
    config.save()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT vapid_private_key, fcm_service_account, apns_key "
            "FROM native_appproviderconfig WHERE id = %s",
            [config.pk],
        )
        row = cursor.fetchone()
    assert all(value.startswith("fernet:") for value in row)
    assert "PLAINTEXT-SECRET" not in row[1] and "APNS-SECRET" not in row[2]
    assert "PRIVATE KEY" not in row[0]
    config.refresh_from_db()
    assert "PLAINTEXT-SECRET" in config.fcm_service_account
    assert config.vapid_private_key.startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.django_db
def test_a_changed_secret_key_fails_clearly(settings):
    app = make_app()
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789"
    with pytest.raises(ValueError, match="KPNS_SECRETS_KEY or SECRET_KEY changed"):
        AppProviderConfig.objects.get(app=app)


@pytest.mark.django_db
def test_a_new_app_gets_a_vapid_key_pair():
    config = AppProviderConfig.objects.get(app=make_app())
    assert len(config.vapid_public_key) == 87  # 65 bytes, base64url
    assert config.grace_seconds == 5.0
