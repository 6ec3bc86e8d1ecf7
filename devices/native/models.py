"""Native push records: a device's provider credentials, an app's provider
keys (sealed at rest, devices.native.crypto) and the provider attempts of
each delivery. Design: docs/native-push.md."""

from django.db import models
from django.db.models import Q

from devices.models import App, Delivery, Device, Message, WakeMode
from devices.native.crypto import SealedTextField


class Channel(models.TextChoices):
    """What carried a delivery. ``socket`` is the Delivery row itself."""

    SOCKET = "socket", "Socket"
    WEBPUSH = "webpush", "Web Push"
    FCM = "fcm", "FCM"
    APNS = "apns", "APNs"


class CredentialKind(models.TextChoices):
    WEBPUSH = "webpush", "Web Push"
    FCM = "fcm", "FCM"
    APNS = "apns", "APNs"


class ApnsEnvironment(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox"
    PRODUCTION = "production", "Production"


class PushCredential(models.Model):
    """How a provider reaches one device: at most one per kind per device."""

    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="push_credentials"
    )
    kind = models.CharField(max_length=8, choices=CredentialKind.choices)
    # Web Push: the subscription (endpoint, keys.p256dh, keys.auth).
    endpoint = models.URLField(max_length=2000, blank=True)
    p256dh = models.CharField(max_length=100, blank=True)
    auth = models.CharField(max_length=32, blank=True)
    # FCM registration token or APNs device token.
    token = models.CharField(max_length=512, blank=True)
    environment = models.CharField(
        max_length=10, choices=ApnsEnvironment.choices, blank=True
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivation_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device", "kind"], name="uniq_push_credential_kind"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.device_id}"


class AppProviderConfig(models.Model):
    """An app's provider keys and its native delivery policy."""

    app = models.OneToOneField(
        App, on_delete=models.CASCADE, related_name="provider_config"
    )
    # Web Push (RFC 8292): generated with the app; the public key (base64url
    # of the uncompressed P-256 point) is the JS SDK's applicationServerKey.
    vapid_public_key = models.CharField(max_length=100)
    vapid_private_key = SealedTextField()
    vapid_generated_at = models.DateTimeField(null=True, blank=True)
    # FCM HTTP v1: the project and a service account's JSON key.
    fcm_project_id = models.CharField(max_length=100, blank=True)
    fcm_service_account = SealedTextField(blank=True)
    fcm_service_account_set_at = models.DateTimeField(null=True, blank=True)
    # APNs token auth: the .p8 key and who it belongs to.
    apns_key = SealedTextField(blank=True)
    apns_key_set_at = models.DateTimeField(null=True, blank=True)
    apns_key_id = models.CharField(max_length=10, blank=True)
    apns_team_id = models.CharField(max_length=10, blank=True)
    apns_bundle_id = models.CharField(max_length=200, blank=True)
    # The APNs server of devices that registered a token without saying
    # (a development build's token is only valid in the sandbox).
    apns_environment = models.CharField(
        max_length=10,
        choices=ApnsEnvironment.choices,
        default=ApnsEnvironment.PRODUCTION,
    )
    # How long a socket delivery may stay unacked before its provider is
    # tried (the policy, docs/native-push.md).
    grace_seconds = models.FloatField(default=5.0)
    wake_mode = models.CharField(
        max_length=12, choices=WakeMode.choices, default=WakeMode.NOTIFICATION
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Provider keys of app {self.app_id}"


class AttemptStatus(models.TextChoices):
    RETRY = "retry", "Due again at next_retry_at"
    ACCEPTED = "accepted", "Accepted by the provider"
    FAILED = "failed", "Failed"


class NativeAttempt(models.Model):
    """A delivery's trip through one provider: the receipt of that channel."""

    delivery = models.ForeignKey(
        Delivery,
        on_delete=models.CASCADE,
        related_name="native_attempts",
        db_constraint=False,
    )
    credential = models.ForeignKey(
        PushCredential, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    status = models.CharField(max_length=8, choices=AttemptStatus.choices)
    reason = models.CharField(max_length=200, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    # When the device itself said it got the message through this channel
    # (opened from the provider's notification, POST /device/opened) before
    # any socket ack: the channel that carried it. ``accepted`` alone is
    # the provider's word, not the device's.
    device_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "channel"], name="uniq_native_attempt_channel"
            )
        ]
        indexes = [
            # The retry sweep looks only at attempts still due.
            models.Index(
                fields=["next_retry_at"],
                condition=Q(status="retry"),
                name="native_attempt_due_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.status} #{self.delivery_id}"


class ChannelCount(models.Model):
    """One shard of a message's native receipts by channel
    (devices.native.channelcounts): moved in the same transaction as the
    attempt rows they count, so the stats never count those rows."""

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    shard = models.SmallIntegerField()
    channel = models.CharField(max_length=8, choices=Channel.choices)
    accepted = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    retrying = models.BigIntegerField(default=0)
    # Confirmed by the device through this channel (device_seen_at).
    delivered = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "channel", "shard"],
                name="uniq_channel_count_shard",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} counts of {self.message_id} #{self.shard}"
