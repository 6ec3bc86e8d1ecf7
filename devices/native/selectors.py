"""Reads of native push: what a delivery becomes for each provider."""

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django.db.models import (
    Case,
    CharField,
    OuterRef,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from devices.delivery import counters
from devices.models import App, Delivery
from devices.native import apns, channelcounts
from devices.native.dispatch import NativeDelivery, ProviderKeys
from devices.native.message import NativeMessage
from devices.native.models import (
    AppProviderConfig,
    AttemptStatus,
    Channel,
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
        # The message's own choice, else its app's.
        wake=delivery.message.wake_mode or config.wake_mode,
        endpoint=credential.endpoint,
        p256dh=credential.p256dh,
        auth=credential.auth,
        token=credential.token,
        environment=credential.environment or config.apns_environment,
        delivery_id=delivery.pk,
        credential_id=credential.pk,
    )


NATIVE_CHANNELS = (Channel.WEBPUSH, Channel.FCM, Channel.APNS)
CHANNEL_STAT_NAMES = (
    "delivered_socket",
    *(f"delivered_{c}" for c in NATIVE_CHANNELS),
    *(f"accepted_{c}" for c in NATIVE_CHANNELS),
    "native_failed",
    "native_retrying",
)


def channel_split(
    message_id: Any, *, delivered: int | None = None
) -> dict[str, dict[str, int]]:
    """A message's (or a list of messages': a campaign's) deliveries by
    the channel that carried them, from the counters
    (devices.native.channelcounts, devices.delivery.counters): never a
    COUNT over their rows.

    ``socket.delivered``: confirmed by the device and not through a
    provider. Per provider: ``accepted`` (the provider took it, which says
    nothing of the device), ``failed`` (given up: dead credential, too
    large, attempts exhausted), ``retrying`` (due again or in flight) and
    ``delivered`` (the device reported it through that provider before any
    socket ack). A delivery may count under the socket and a provider: the
    policy sends it natively once its grace passed unacked. ``delivered``:
    the messages' delivered count when the caller has read it already.
    """
    empty = dict.fromkeys(channelcounts.COLUMNS, 0)
    split: dict[str, dict[str, int]] = {"socket": {"delivered": 0}}
    split.update({channel.value: dict(empty) for channel in NATIVE_CHANNELS})
    ids = message_id if isinstance(message_id, list) else [message_id]
    ids = [i for i in ids if i is not None]
    if not ids:
        return split
    for channel, counts in channelcounts.channel_counts(ids).items():
        split[channel] = counts
    if delivered is None:
        delivered = sum(counters.message_counts(i)["delivered"] for i in ids)
    natively = sum(split[channel]["delivered"] for channel in NATIVE_CHANNELS)
    split["socket"]["delivered"] = delivered - natively
    return split


def channel_stats(message_id: Any, *, delivered: int | None = None) -> dict[str, int]:
    """``channel_split`` as the flat columns of the admin's stats table and
    the campaign stats JSON: ``delivered_<channel>``, ``accepted_<provider>``,
    and the providers' ``native_failed`` and ``native_retrying`` summed."""
    split = channel_split(message_id, delivered=delivered)
    stats = dict.fromkeys(CHANNEL_STAT_NAMES, 0)
    stats["delivered_socket"] = split["socket"]["delivered"]
    for channel in NATIVE_CHANNELS:
        counts = split[channel]
        stats[f"delivered_{channel}"] = counts["delivered"]
        stats[f"accepted_{channel}"] = counts["accepted"]
        stats["native_failed"] += counts["failed"]
        stats["native_retrying"] += counts["retrying"]
    return stats


def delivery_channel() -> Any:
    """An expression for a delivery row: the channel that carried it to the
    device (a provider the device confirmed, else the socket if acked), else
    the provider that accepted it, else empty (not carried yet)."""
    attempts = NativeAttempt.objects.filter(delivery_id=OuterRef("pk"))
    seen = attempts.filter(device_seen_at__isnull=False).values("channel")[:1]
    accepted = attempts.filter(status=AttemptStatus.ACCEPTED).values("channel")[:1]
    return Coalesce(
        Subquery(seen),
        Case(When(delivered_at__isnull=False, then=Value(Channel.SOCKET.value))),
        Subquery(accepted),
        Value(""),
        output_field=CharField(),
    )
