"""Reads of native push: what a delivery becomes for each provider."""

import json
from collections.abc import Iterable
from dataclasses import replace

from django.utils import timezone

from devices.models import App, Delivery
from devices.native import apns
from devices.native.dispatch import NativeDelivery, ProviderKeys
from devices.native.message import NativeMessage
from devices.native.models import (
    AppProviderConfig,
    AttemptStatus,
    NativeAttempt,
    PushCredential,
)
from devices.native.services import provider_config_of


def vapid_public_key(*, app: App) -> str:
    return provider_config_of(app=app).vapid_public_key


def provider_keys(config: AppProviderConfig) -> ProviderKeys:
    apns_key = None
    if config.apns_key and config.apns_key_id and config.apns_team_id:
        apns_key = apns.ApnsKey(
            config.apns_key,
            config.apns_key_id,
            config.apns_team_id,
            config.apns_bundle_id,
        )
    return ProviderKeys(
        vapid_private_pem=config.vapid_private_key,
        fcm_project_id=config.fcm_project_id,
        fcm_account=json.loads(config.fcm_service_account)
        if config.fcm_service_account
        else None,
        apns_key=apns_key,
    )


def native_message(delivery: Delivery) -> NativeMessage:
    message = delivery.message
    remaining = (delivery.expires_at - timezone.now()).total_seconds()
    return NativeMessage(
        id=str(message.id),
        seq=delivery.seq,
        title=message.title,
        body=message.body,
        url=message.url,
        image=message.image,
        data=message.data,
        collapse_key=message.collapse_key,
        ttl_seconds=max(0, int(remaining)),
        priority=message.priority,
    )


def native_deliveries(
    *, delivery_ids: Iterable[int], kinds: Iterable[str] | None = None
) -> list[NativeDelivery]:
    """One NativeDelivery per (delivery, active credential of its device):
    what the policy hands to ``native_send`` for deliveries no socket took."""
    deliveries = list(
        Delivery.objects.filter(pk__in=list(delivery_ids)).select_related(
            "message", "device"
        )
    )
    credentials = PushCredential.objects.filter(
        device_id__in={d.device_id for d in deliveries}, is_active=True
    )
    if kinds is not None:
        credentials = credentials.filter(kind__in=list(kinds))
    by_device: dict[object, list[PushCredential]] = {}
    for credential in credentials:
        by_device.setdefault(credential.device_id, []).append(credential)
    configs: dict[int, AppProviderConfig] = {}
    built = []
    for delivery in deliveries:
        app_id = delivery.device.app_id
        if app_id not in configs:
            configs[app_id] = provider_config_of(app=delivery.device.app)
        config = configs[app_id]
        for credential in by_device.get(delivery.device_id, []):
            built.append(_native_delivery(delivery, credential, config))
    return built


def native_retries_due(*, limit: int = 500) -> list[NativeDelivery]:
    """Attempts whose retry is due, with the attempts they already made."""
    due = NativeAttempt.objects.filter(
        status=AttemptStatus.RETRY,
        next_retry_at__lte=timezone.now(),
        credential__is_active=True,
    ).order_by("next_retry_at")[:limit]
    attempts = {(a.delivery_id, a.credential_id): a.attempts for a in due}
    built = native_deliveries(delivery_ids={d for d, _ in attempts})
    return [
        _with_attempts(d, attempts[(d.delivery_id, d.credential_id)])
        for d in built
        if (d.delivery_id, d.credential_id) in attempts
    ]


def _with_attempts(delivery: NativeDelivery, attempts: int) -> NativeDelivery:
    return replace(delivery, attempts=attempts)


def _native_delivery(
    delivery: Delivery, credential: PushCredential, config: AppProviderConfig
) -> NativeDelivery:
    return NativeDelivery(
        kind=credential.kind,
        message=native_message(delivery),
        keys=provider_keys(config),
        wake=config.wake_mode,
        endpoint=credential.endpoint,
        p256dh=credential.p256dh,
        auth=credential.auth,
        token=credential.token,
        environment=credential.environment or "production",
        delivery_id=delivery.pk,
        credential_id=credential.pk,
    )
