"""Device registry and per-device inbox.

The inbox (Message + Delivery) is the durable record the delivery guarantee
rests on: a Delivery row with its per-device ``seq`` is committed before any
frame leaves a server. Design: docs/architecture.md.
"""

import uuid

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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Device(models.Model):
    """One installation of an app; holds at most one live socket."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="devices")
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

    class Meta:
        indexes = [
            models.Index(fields=["app", "alias"], name="device_app_alias_idx"),
            models.Index(fields=["app", "last_seen_at"], name="device_app_seen_idx"),
            models.Index(fields=["app", "node"], name="device_app_node_idx"),
            models.Index(fields=["node"], name="device_node_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.alias or self.token_prefix}"

    @property
    def online(self) -> bool:
        return self.node is not None


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


class Priority(models.TextChoices):
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"


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
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["app", "collapse_key"], name="message_collapse_idx")
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

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="deliveries"
    )
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="deliveries"
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
