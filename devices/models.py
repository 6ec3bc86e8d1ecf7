"""Device registry and per-device inbox.

The inbox (Message + Delivery) is the durable record the delivery guarantee
rests on: a Delivery row with its per-device ``seq`` is committed before any
frame leaves a server. Design: docs/architecture.md.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Platform(models.TextChoices):
    ANDROID = "android", "Android"
    IOS = "ios", "iOS"
    WEB = "web", "Web"
    DESKTOP = "desktop", "Desktop"
    OTHER = "other", "Other"


class App(models.Model):
    """A tenant: one mobile or web application and its devices."""

    name = models.CharField(max_length=100)
    client_key = models.CharField(
        max_length=64,
        unique=True,
        help_text="Public key that device SDKs use to register.",
    )
    default_timezone = models.CharField(max_length=64, default="UTC")
    # Pacing (docs/console.md, "Frequency caps and quiet hours"): at most
    # frequency_cap_count capped pushes per device in a rolling window (no
    # count: no cap), and a device-local window in which campaign pushes
    # wait or are skipped (no times: none). Campaigns may override both.
    frequency_cap_count = models.PositiveIntegerField(
        null=True,
        blank=True,
        verbose_name="frequency cap",
        help_text="At most this many campaign pushes per device in the window. "
        "Empty: no cap.",
    )
    frequency_cap_window_seconds = models.PositiveIntegerField(
        default=86400, verbose_name="frequency cap window"
    )
    quiet_hours_start = models.TimeField(
        null=True, blank=True, help_text="In each device's own time zone."
    )
    quiet_hours_end = models.TimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Device(models.Model):
    """One installation of an app; holds at most one live socket."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the (app, ...) indexes below, which lead with it.
    app = models.ForeignKey(
        App, on_delete=models.CASCADE, related_name="devices", db_index=False
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=12, editable=False)
    platform = models.CharField(
        max_length=16, choices=Platform.choices, default=Platform.OTHER
    )
    alias = models.CharField(
        max_length=128, blank=True, help_text="The integrator's user id."
    )
    locale = models.CharField(max_length=16, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    app_version = models.CharField(max_length=32, blank=True)
    # app_version as text that sorts as versions do (1.10 after 1.9), for
    # audiences comparing versions; "" when it is not a version.
    app_version_key = models.CharField(
        max_length=64, blank=True, default="", db_default="", editable=False
    )
    attributes = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Presence: the server node holding the socket, and which socket it is,
    # so a late disconnect of an old socket never clears a newer one.
    node = models.CharField(  # noqa: DJ001 - NULL means offline
        max_length=64, null=True, blank=True, editable=False
    )
    connection_id = models.CharField(  # noqa: DJ001 - NULL while offline
        max_length=32, null=True, blank=True, editable=False
    )
    # Inbox positions: last_seq is the newest sequence assigned to this
    # device, acked_seq the highest the device confirmed it has processed.
    last_seq = models.BigIntegerField(default=0, editable=False)
    acked_seq = models.BigIntegerField(default=0, editable=False)
    # When the server last gave up on this device's socket: closed 4429
    # (too slow to read its pushes) or 4400 (protocol errors). Canary waves
    # judge their devices on it (campaigns.canary).
    bad_close_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["app", "alias"], name="device_app_alias_idx"),
            models.Index(fields=["app", "last_seen_at"], name="device_app_seen_idx"),
            models.Index(fields=["app", "node"], name="device_app_node_idx"),
            models.Index(fields=["node"], name="device_node_idx"),
            # Canary waves count the devices revoked or closed 4429/4400
            # since their campaign started (campaigns.canary): read from
            # these few rows, not by joining every delivery of the campaign.
            models.Index(
                fields=["revoked_at"],
                condition=Q(revoked_at__isnull=False),
                name="device_revoked_idx",
            ),
            models.Index(
                fields=["bad_close_at"],
                condition=Q(bad_close_at__isnull=False),
                name="device_bad_close_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.alias or self.token_prefix}"

    @property
    def online(self) -> bool:
        return self.node is not None


class Segment(models.Model):
    """A saved audience of an app, used by campaigns and pushes by its id.

    Read when used: a campaign sends to its segment as the segment is when
    the campaign sends (docs/api.md, "Segments"). It lives beside the
    devices because direct pushes resolve it too; campaigns.segments holds
    the rules that involve campaigns (no deletion while one will send).
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    spec = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["app", "name"], name="uniq_segment_name")
        ]

    def __str__(self) -> str:
        return self.name


class DeviceTag(models.Model):
    """A tag on a device; a row each so the database can target by tag."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="tags")
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "name"], name="uniq_device_tag")
        ]
        indexes = [models.Index(fields=["app", "name"], name="tag_app_name_idx")]

    def __str__(self) -> str:
        return self.name


class DeviceKey(models.Model):
    """A device's current public key for end-to-end encrypted pushes
    (docs/e2ee.md): ECDH P-256, the uncompressed point in base64url. A new
    key replaces the old one (rotation); the device keeps its previous
    private key so that pushes already queued to it still decrypt."""

    device = models.OneToOneField(
        Device, on_delete=models.CASCADE, primary_key=True, related_name="key"
    )
    kid = models.CharField(max_length=64)
    public_key = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.kid


class Priority(models.TextChoices):
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"


class WakeMode(models.TextChoices):
    """How a native provider carries a message (docs/native-push.md)."""

    NOTIFICATION = "notification", "Full notification"
    DATA = "data", "Data-only wake-up"


class Control(models.TextChoices):
    RECALL = "recall", "Recall"
    UPDATE = "update", "Update"


class Message(models.Model):
    """What is sent: content plus delivery options, shared by its deliveries."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="messages")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.URLField(max_length=1000, blank=True)
    image = models.URLField(max_length=1000, blank=True)
    data = models.JSONField(default=dict, blank=True)
    priority = models.CharField(
        max_length=8, choices=Priority.choices, default=Priority.NORMAL
    )
    collapse_key = models.CharField(max_length=64, blank=True)
    # An end-to-end encrypted push: {kid, epk, iv, ct} for its one device,
    # stored and forwarded opaque (docs/e2ee.md). NULL for plain pushes.
    encrypted = models.JSONField(null=True, blank=True, editable=False)
    # Through a native provider: a visible notification or a data-only
    # wake-up; empty: the app's setting (AppProviderConfig.wake_mode).
    wake_mode = models.CharField(max_length=12, choices=WakeMode.choices, blank=True)
    # A control message (devices.delivery.recall): the recall or update of
    # `control_of`, delivered in each device's inbox like a push. Empty for
    # ordinary messages (also by database default: the batch INSERT of
    # devices.delivery.enqueue names its columns).
    control = models.CharField(
        max_length=8,
        choices=Control.choices,
        blank=True,
        default="",
        db_default="",
        editable=False,
    )
    control_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="controls",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["app", "collapse_key"], name="message_collapse_idx"),
            # Retention (devices.delivery.retention) walks messages by expiry.
            models.Index(fields=["expires_at"], name="message_expiry_idx"),
        ]

    def __str__(self) -> str:
        return self.title


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # committed, not yet written to a socket
    SENT = "sent", "Sent"  # written to a socket, not acked
    DELIVERED = "delivered", "Delivered"  # acked by the device
    OPENED = "opened", "Opened"  # the user opened it
    EXPIRED = "expired", "Expired"  # TTL passed before delivery
    COLLAPSED = "collapsed", "Collapsed"  # replaced by a newer message
    CANCELLED = "cancelled", "Cancelled"  # its campaign was cancelled
    DROPPED = "dropped", "Dropped"  # pruned: backlog over the limit


OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENT)


class Delivery(models.Model):
    """One message for one device, at that device's sequence number."""

    # The hottest table: a campaign inserts a row per device. No
    # single-column indexes on the two keys ((device, message), (device, seq)
    # and (message, status) lead with them) and no database-level foreign
    # keys: their deferred checks were a quarter of each 5,000-row chunk's
    # time (docs/benchmarks.md). Rows are only ever inserted by
    # enqueue.deliveries_write, from device rows it has just locked in the
    # same transaction and a message it has just saved; deleting a device or
    # message still deletes its deliveries (Django's CASCADE).
    message = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
        db_constraint=False,
    )
    device = models.ForeignKey(
        Device,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
        db_constraint=False,
    )
    seq = models.BigIntegerField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["device", "message"], name="uniq_delivery_device_message"
            ),
            models.UniqueConstraint(
                fields=["device", "seq"], name="uniq_delivery_device_seq"
            ),
        ]
        indexes = [
            models.Index(fields=["message", "status"], name="delivery_msg_status_idx"),
            # Replay and sweeps only ever look at open deliveries; the partial
            # index stays small however long the history grows.
            models.Index(
                fields=["device", "seq"],
                condition=Q(status__in=OPEN_STATUSES),
                name="delivery_open_idx",
            ),
            models.Index(
                fields=["expires_at"],
                condition=Q(status__in=OPEN_STATUSES),
                name="delivery_open_expiry_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} -> {self.device_id} #{self.seq}"


class MessageCount(models.Model):
    """One shard of a message's delivery counts (devices.delivery.counters).

    Moved in the same transaction as the delivery rows they count, so they
    are exact, and kept when retention deletes the rows. A message has up to
    COUNT_SHARDS rows (shard >= 0), each written by whichever transaction
    drew it, so receipts of two nodes do not queue on one row; shard -1 is
    the base, what a message counted before it had counters. Read: the sum.
    """

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    shard = models.SmallIntegerField()
    targeted = models.BigIntegerField(default=0)
    sent = models.BigIntegerField(default=0)
    delivered = models.BigIntegerField(default=0)
    opened = models.BigIntegerField(default=0)
    expired = models.BigIntegerField(default=0)
    collapsed = models.BigIntegerField(default=0)
    cancelled = models.BigIntegerField(default=0)
    dropped = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "shard"], name="uniq_message_count_shard"
            )
        ]

    def __str__(self) -> str:
        return f"{self.message_id} [{self.shard}]"


class DeliveredMinute(models.Model):
    """Deliveries acked per minute, in shards: the admin's "delivered in the
    last hour" without reading the delivery table (devices.delivery.counters)."""

    minute = models.DateTimeField()
    shard = models.SmallIntegerField()
    delivered = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "shard"], name="uniq_delivered_minute_shard"
            )
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} [{self.shard}]"


class CappedPush(models.Model):
    """One push that counts toward its device's frequency cap
    (devices.delivery.caps): the ledger the cap is checked against.

    A push counts exactly when it is subject to a cap. Rows older than the
    longest window a cap may have are pruned by housekeeping.
    """

    device = models.ForeignKey(
        Device,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    sent_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The cap check counts each device's rows in the window: an
            # index-only range scan per device (devices.delivery.caps).
            models.Index(fields=["device", "sent_at"], name="capped_push_device_idx"),
            models.Index(fields=["sent_at"], name="capped_push_sent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id} @ {self.sent_at:%Y-%m-%d %H:%M}"


class Node(models.Model):
    """A server process holding sockets; it heartbeats while alive."""

    name = models.CharField(max_length=64, primary_key=True)
    channel_name = models.CharField(max_length=200)
    hostname = models.CharField(max_length=200)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    connections = models.IntegerField(default=0)
    draining = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# Server API --------------------------------------------------------------


class ApiKey(models.Model):
    """A server API key of one app. Only a SHA-256 hash of the key is stored;
    the plaintext is shown once, when it is created (devices.apikeys)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(
        max_length=16, editable=False, help_text="The key's visible beginning."
    )
    scopes = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["app", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    """The first response to a request sent with an Idempotency-Key.

    Written in the same transaction as the request's effects, under a unique
    (api_key, key) constraint: a concurrent duplicate waits for that
    transaction and then replays its response (devices.idempotency).
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    # The rendered JSON, replayed byte for byte.
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "key"], name="uniq_idempotency_key"
            )
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return self.key


class WebhookEvent(models.TextChoices):
    MESSAGE_DELIVERED = "message.delivered", "message.delivered"
    MESSAGE_OPENED = "message.opened", "message.opened"
    MESSAGE_RECALLED = "message.recalled", "message.recalled"
    MESSAGE_UPDATED = "message.updated", "message.updated"
    CAMPAIGN_FINISHED = "campaign.finished", "campaign.finished"
    DEVICE_UNREGISTERED = "device.unregistered", "device.unregistered"


class WebhookEndpoint(models.Model):
    """An integrator's URL that receives signed event calls (devices.webhooks)."""

    app = models.ForeignKey(
        App, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=1000)
    events = models.JSONField(default=list)
    # Kept in clear: it signs every call. Shown in full once, at creation.
    secret = models.CharField(max_length=64, editable=False)
    description = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["app", "url"]

    def __str__(self) -> str:
        return self.url


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # due at next_attempt_at
    SUCCEEDED = "succeeded", "Succeeded"  # the receiver answered 2xx
    FAILED = "failed", "Failed"  # gave up after the last attempt


class WebhookDelivery(models.Model):
    """The outbox: one event for one endpoint, written in the same transaction
    as the event itself and sent (with retries) by the scheduler process."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    event = models.CharField(max_length=32, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10,
        choices=WebhookDeliveryStatus.choices,
        default=WebhookDeliveryStatus.PENDING,
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # The dispatcher only ever looks at pending rows.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_due_idx",
            ),
            models.Index(fields=["created_at"], name="webhook_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint_id}"


class MessageEvent(models.Model):
    """An event the app reports about a push it received (``crash`` after
    opening it, say): one per device, message and name, so a retry or a
    repeated crash counts once. Canary rollouts judge a wave on them
    (campaigns.canary)."""

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    name = models.CharField(max_length=40)
    at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "name", "device"], name="uniq_message_event"
            )
        ]

    def __str__(self) -> str:
        return f"{self.message_id}:{self.name}"
