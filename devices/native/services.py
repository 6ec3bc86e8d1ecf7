"""Writes of native push: provider keys, device credentials, attempt receipts."""

from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from devices.delivery import receipts
from devices.models import App, Delivery, Device
from devices.native import webpush
from devices.native.channelcounts import ChannelTally
from devices.native.conf import native_setting
from devices.native.dispatch import NativeResult
from devices.native.models import (
    AppProviderConfig,
    AttemptStatus,
    Channel,
    NativeAttempt,
    PushCredential,
)


def provider_config_create(*, app: App) -> AppProviderConfig:
    public, private = webpush.vapid_keys_generate()
    config, _ = AppProviderConfig.objects.get_or_create(
        app=app,
        defaults={
            "vapid_public_key": public,
            "vapid_private_key": private,
            "vapid_generated_at": timezone.now(),
        },
    )
    return config


def provider_config_of(*, app: App) -> AppProviderConfig:
    """The app's config; apps made before native push get theirs on first use."""
    config = AppProviderConfig.objects.filter(app=app).first()
    return config or provider_config_create(app=app)


def webpush_endpoint_allowed(endpoint: str) -> bool:
    """Only https URLs of known push services (KPNS_WEBPUSH_HOSTS): the
    server POSTs to this URL, so a device must not choose any address."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    for allowed in native_setting("WEBPUSH_HOSTS"):
        allowed = allowed.lower()
        suffix_match = allowed.startswith(".") and host.endswith(allowed)
        if suffix_match or host == allowed:
            # A host listed exactly (a local receiver) may use http.
            return parts.scheme == "https" or host == allowed
    return False


def credential_register(
    *,
    device: Device,
    kind: str,
    endpoint: str = "",
    p256dh: str = "",
    auth: str = "",
    token: str = "",
    environment: str = "",
) -> PushCredential:
    """Set the device's credential of this kind (one per kind), active again."""
    credential, _ = PushCredential.objects.update_or_create(
        device=device,
        kind=kind,
        defaults={
            "endpoint": endpoint,
            "p256dh": p256dh,
            "auth": auth,
            "token": token,
            "environment": environment,
            "is_active": True,
            "deactivated_at": None,
            "deactivation_reason": "",
        },
    )
    return credential


def credential_unregister(*, device: Device, kind: str) -> bool:
    deleted, _ = PushCredential.objects.filter(device=device, kind=kind).delete()
    return deleted > 0


def credential_deactivate(*, credential_id: int, reason: str) -> None:
    PushCredential.objects.filter(pk=credential_id, is_active=True).update(
        is_active=False,
        deactivated_at=timezone.now(),
        deactivation_reason=reason[:200],
    )


@transaction.atomic
def native_results_record(*, results: list[NativeResult]) -> None:
    """Each result becomes its delivery's attempt row for that channel; a
    credential the provider called dead is deactivated. The channel
    counters move with the rows (devices.native.channelcounts)."""
    ids = {r.delivery.delivery_id for r in results} - {None}
    status_of = {
        (delivery_id, channel): status
        for delivery_id, channel, status in NativeAttempt.objects.select_for_update()
        .filter(delivery_id__in=ids)
        .order_by("pk")
        .values_list("delivery_id", "channel", "status")
    }
    tally = ChannelTally()
    for result in results:
        delivery = result.delivery
        if result.deactivate and delivery.credential_id is not None:
            credential_deactivate(
                credential_id=delivery.credential_id, reason=result.reason
            )
        if delivery.delivery_id is None:
            continue
        key = (delivery.delivery_id, result.channel)
        tally.moved(
            delivery.message.id, result.channel, status_of.get(key), result.status
        )
        status_of[key] = result.status
        NativeAttempt.objects.update_or_create(
            delivery_id=delivery.delivery_id,
            channel=result.channel,
            defaults={
                "credential_id": delivery.credential_id,
                "status": result.status,
                "reason": result.reason[:200],
                "status_code": result.status_code,
                "attempts": result.attempts,
                "next_retry_at": result.next_retry_at
                if result.status == AttemptStatus.RETRY
                else None,
            },
        )
    tally.apply()


def native_opened(*, device: Device, message_id: str, seq: int) -> bool:
    """The device opened a message it got through a provider (its service
    worker, or an app woken by FCM/APNs): the delivery is delivered and
    opened, and its webhooks name the channel that carried it (the
    provider's that accepted it, else the socket's). False when this device
    has no such delivery."""
    delivery = (
        Delivery.objects.filter(device=device, seq=seq, message_id=message_id)
        .only("pk", "delivered_at")
        .first()
    )
    if delivery is None:
        return False
    carried = (
        NativeAttempt.objects.filter(delivery=delivery, status=AttemptStatus.ACCEPTED)
        .values_list("channel", flat=True)
        .first()
    )
    channel = carried or Channel.SOCKET
    receipts.receipts_record(
        receipts.Receipts(opened=[(device.pk, seq, str(message_id))], channel=channel)
    )
    if carried and delivery.delivered_at is None:
        # No socket ack came first: the provider carried it to the device.
        with transaction.atomic():
            seen = NativeAttempt.objects.filter(
                delivery=delivery, channel=carried, device_seen_at__isnull=True
            ).update(device_seen_at=timezone.now())
            tally = ChannelTally()
            tally.seen(message_id, carried, seen)
            tally.apply()
    return True
