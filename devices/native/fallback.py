"""The delivery policy: socket first, then the device's provider.

A delivery whose device holds no socket (presence: ``Device.node`` is
NULL), or that its socket has not acked within the app's
``grace_seconds``, and whose device has an active push credential, is sent
through that provider under the same message id and seq
(``dispatch.native_send``). The scheduler process runs this on a thread of
its own with its own event loop (``NativeFallback``), so a slow or failing
provider never holds a campaign chunk, and never a socket delivery: those
are written by the server processes, which this code does not touch.

Every due delivery is *claimed* before it is sent: one NativeAttempt row per
channel, inserted under the (delivery, channel) unique constraint with a
token of this look and a lease (``NATIVE_CLAIM_LEASE_SECONDS``). Two
schedulers never send the same delivery twice, no delivery row is locked
(socket receipts never wait on a provider), and a scheduler that dies
mid-send leaves rows that come due as retries when their lease ends.

Design: docs/native-push.md, "The policy as built".
"""

import asyncio
import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import replace
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from devices.delivery import recovery
from devices.models import OPEN_STATUSES, Delivery
from devices.native import dispatch, selectors
from devices.native.channelcounts import ChannelTally
from devices.native.conf import native_setting
from devices.native.dispatch import NativeDelivery
from devices.native.models import (
    AppProviderConfig,
    AttemptStatus,
    NativeAttempt,
    PushCredential,
)

logger = logging.getLogger(__name__)

# The model's default: the grace of apps whose config does not say.
DEFAULT_GRACE = AppProviderConfig._meta.get_field("grace_seconds").default
# Deliveries per native_send call: one gather, one receipts transaction.
SEND_CHUNK = 100


def late_filter(now: datetime) -> Q:
    """Deliveries older than their app's grace. Apps are grouped by their
    grace (a handful of distinct values), so this is a few range tests on
    ``created_at``, not a join per row."""
    groups: dict[float, list[int]] = defaultdict(list)
    for app_id, grace in AppProviderConfig.objects.exclude(
        grace_seconds=DEFAULT_GRACE
    ).values_list("app_id", "grace_seconds"):
        groups[grace].append(app_id)
    special = [app_id for apps in groups.values() for app_id in apps]
    late = Q(created_at__lte=now - timedelta(seconds=DEFAULT_GRACE))
    if special:
        late &= ~Q(device__app_id__in=special)
    for grace, apps in groups.items():
        late |= Q(
            device__app_id__in=apps, created_at__lte=now - timedelta(seconds=grace)
        )
    return late


def fallback_candidates(
    *, now: datetime, after_id: int | None, limit: int
) -> list[int]:
    """Ids of open deliveries no socket took, in id order: device offline
    or unacked past its app's grace, an active credential, no attempt yet.

    ``after_id`` bounds the look to a primary key range (the incremental
    look); None is the full look, driven from the active credentials through
    the open-deliveries index. The existence tests use the unique indexes
    (device, kind) of credentials and (delivery, channel) of attempts.
    """
    active = PushCredential.objects.filter(is_active=True)
    if not active.exists():
        # No device has a provider: nothing can be due. Without this test
        # the look (every NATIVE_FALLBACK_SECONDS) read every open delivery
        # of the lookback anyway, 1-4 s of a PostgreSQL core each time at
        # 10,000 socket devices and no credential (docs/benchmarks.md,
        # "Targeted sends at 10,000 connected devices: the p99 stalls").
        return []
    rows = Delivery.objects.filter(
        Q(device__node__isnull=True) | late_filter(now),
        status__in=OPEN_STATUSES,
        expires_at__gt=now,
        device__is_active=True,
        # A recall or update goes by socket only: a provider would show it
        # as a new notification (docs/guarantees.md, "Known limits").
        message__control="",
    ).filter(~Exists(NativeAttempt.objects.filter(delivery_id=OuterRef("pk"))))
    if after_id is None:
        rows = rows.filter(device_id__in=active.values("device_id"))
    else:
        rows = rows.filter(
            Exists(active.filter(device_id=OuterRef("device_id"))), pk__gt=after_id
        )
    return list(rows.order_by("pk").values_list("pk", flat=True)[:limit])


def fallback_claim(*, delivery_ids: list[int], now: datetime) -> list[NativeDelivery]:
    """Claim each delivery's channels (one attempt row each, lease and
    token) and return the sends this caller owns; rows another scheduler
    inserted first are skipped by the unique constraint."""
    if not delivery_ids:
        return []
    built = selectors.native_deliveries(delivery_ids=delivery_ids)
    token = _claim_token()
    lease = now + timedelta(seconds=native_setting("NATIVE_CLAIM_LEASE_SECONDS"))
    with transaction.atomic():
        owned = _claim_rows(built, token, lease)
        tally = ChannelTally()
        for native in owned:
            tally.moved(native.message.id, native.kind, None, AttemptStatus.RETRY)
        tally.apply()
    return owned


def _claim_rows(
    built: list[NativeDelivery], token: str, lease: datetime
) -> list[NativeDelivery]:
    NativeAttempt.objects.bulk_create(
        [
            NativeAttempt(
                delivery_id=native.delivery_id,
                credential_id=native.credential_id,
                channel=native.kind,
                status=AttemptStatus.RETRY,
                reason=token,
                next_retry_at=lease,
            )
            for native in built
        ],
        ignore_conflicts=True,
    )
    return _owned(built, token)


def retries_claim(*, now: datetime, limit: int) -> list[NativeDelivery]:
    """Attempts due again (a provider's long Retry-After, an open breaker,
    an expired lease), claimed by moving their lease forward in one UPDATE
    that only matches rows still due."""
    due = list(
        NativeAttempt.objects.filter(
            status=AttemptStatus.RETRY,
            next_retry_at__lte=now,
            credential__is_active=True,
            delivery__status__in=OPEN_STATUSES,
            delivery__expires_at__gt=now,
        )
        .order_by("next_retry_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not due:
        return []
    token = _claim_token()
    lease = now + timedelta(seconds=native_setting("NATIVE_CLAIM_LEASE_SECONDS"))
    NativeAttempt.objects.filter(
        pk__in=due, status=AttemptStatus.RETRY, next_retry_at__lte=now
    ).update(reason=token, next_retry_at=lease)
    owned = {
        (delivery_id, channel): attempts
        for delivery_id, channel, attempts in NativeAttempt.objects.filter(
            pk__in=due, reason=token
        ).values_list("delivery_id", "channel", "attempts")
    }
    built = selectors.native_deliveries(delivery_ids={d for d, _c in owned})
    return [
        replace(native, attempts=owned[(native.delivery_id, native.kind)])
        for native in built
        if (native.delivery_id, native.kind) in owned
    ]


def _claim_token() -> str:
    return f"claimed {uuid.uuid4().hex}"


def _owned(built: list[NativeDelivery], token: str) -> list[NativeDelivery]:
    ids = {native.delivery_id for native in built}
    owned = set(
        NativeAttempt.objects.filter(delivery_id__in=ids, reason=token).values_list(
            "delivery_id", "channel"
        )
    )
    return [n for n in built if (n.delivery_id, n.kind) in owned]


class FallbackScanner:
    """Which looks to make: incremental ones over the deliveries inserted
    since NATIVE_FALLBACK_LOOKBACK_SECONDS ago (a primary key range from a
    high-water mark taken then), a full one every NATIVE_FALLBACK_FULL_SECONDS
    and until a mark is old enough (devices.delivery.sweep does the same)."""

    def __init__(self) -> None:
        self._marks: deque[tuple[float, int]] = deque()
        self._last_full = float("-inf")

    def claim_due(self, *, limit: int) -> list[NativeDelivery]:
        """Retries due first, then new deliveries; at most ``limit`` sends."""
        close_old_connections()
        now = timezone.now()
        claimed = retries_claim(now=now, limit=limit)
        room = limit - len(claimed)
        if room > 0:
            ids = fallback_candidates(now=now, after_id=self._floor(), limit=room)
            claimed += fallback_claim(delivery_ids=ids, now=now)
        return claimed

    def _floor(self) -> int | None:
        """None for a full look, else the id the incremental look starts
        after: the newest mark at least the lookback old (or the oldest mark,
        in a scheduler's first minutes: what was due before it was found by
        the first full look; what was not yet due waits for the next)."""
        mono = time.monotonic()
        marks = self._marks
        marks.append((mono, recovery.delivery_id_high_water()))
        lookback = native_setting("NATIVE_FALLBACK_LOOKBACK_SECONDS")
        while len(marks) > 1 and marks[1][0] <= mono - lookback:
            marks.popleft()
        if mono - self._last_full >= native_setting("NATIVE_FALLBACK_FULL_SECONDS"):
            self._last_full = mono
            return None
        return marks[0][1]


class NativeFallback:
    """The policy loop on a thread of its own, with its own event loop
    (the dispatcher's clients, semaphores and breakers belong to it)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scanner = FallbackScanner()
        self.in_flight = 0
        self.sent = 0

    def start(self) -> "NativeFallback":
        if native_setting("NATIVE_FALLBACK") and self._thread is None:
            self._thread = threading.Thread(
                target=self._main, name="kpns-native-fallback", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.run())
        finally:
            loop.close()

    async def run(self) -> None:
        """Look every NATIVE_FALLBACK_SECONDS (at once again while looks come
        back full and sends fit), until stopped; then let sends finish."""
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                period = native_setting("NATIVE_FALLBACK_SECONDS")
                room = native_setting("NATIVE_FALLBACK_IN_FLIGHT") - self.in_flight
                limit = min(native_setting("NATIVE_FALLBACK_BATCH"), room)
                claimed = await self._claim(limit) if limit > 0 else []
                for start in range(0, len(claimed), SEND_CHUNK):
                    chunk = claimed[start : start + SEND_CHUNK]
                    self.in_flight += len(chunk)
                    task = asyncio.ensure_future(self._send(chunk))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if not claimed or len(claimed) < limit:
                    await asyncio.sleep(period)
                else:
                    await asyncio.sleep(0)
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=30)
            await dispatch.dispatcher_close()

    async def _claim(self, limit: int) -> list[NativeDelivery]:
        try:
            return await database_sync_to_async(self.scanner.claim_due)(limit=limit)
        except DatabaseError as exc:
            logger.warning("native fallback: database unavailable (%s)", exc)
            return []

    async def _send(self, chunk: list[NativeDelivery]) -> None:
        try:
            await dispatch.native_send(deliveries=chunk)
            self.sent += len(chunk)
        except Exception:
            # The claim's lease brings these back as retries.
            logger.exception("native fallback: send failed")
        finally:
            self.in_flight -= len(chunk)
