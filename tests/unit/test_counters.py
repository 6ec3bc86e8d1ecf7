"""Counters (devices/delivery/counters.py) against a COUNT over the rows.

Hypothesis generates sequences of everything that writes or moves a
delivery: pushes (some with collapse keys), campaign chunks (one written
twice), sent / delivered / late-ack / opened receipts, expiry, cancel and
resumes (which ack, expire and drop). After each sequence every message's
stats from the counters must equal the COUNT over its rows that stats were
before, and the per-minute tally must equal the rows delivered meanwhile.
Runs on SQLite and on PostgreSQL (CI runs both).
"""

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.delivery import counters, messages, pushes, receipts, resume
from devices.delivery.enqueue import deliveries_write
from devices.delivery.stats import STAT_NAMES, message_stats
from devices.models import (
    OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
    Device,
    Message,
    MessageCount,
)
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db

DEVICES = 4
picks = st.lists(st.integers(0, 10_000), min_size=1, max_size=5)
targets = st.lists(st.integers(0, DEVICES - 1), min_size=1, max_size=DEVICES)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("push"), targets, st.sampled_from(["", "", "news"])),
        st.tuples(st.just("campaign"), targets, st.integers(0, DEVICES)),
        st.tuples(st.sampled_from(["sent", "ack", "late", "open"]), picks),
        st.tuples(st.sampled_from(["expire", "cancel"]), st.integers(0, 100)),
        st.tuples(st.just("connect"), st.integers(0, DEVICES - 1), st.integers(0, 3)),
    ),
    max_size=14,
)


class Rollback(Exception):
    pass


@pytest.fixture
def world(db, settings):
    # Small backlogs, so that resumes drop deliveries too.
    settings.KPNS = {**settings.KPNS, "MAX_PENDING_PER_DEVICE": 2}
    app = make_app()
    return app, [make_device(app)[0] for _ in range(DEVICES)]


def counted(message_id) -> dict[str, int]:
    """The stats as COUNTs over the rows: what the counters must equal."""
    return Delivery.objects.filter(message_id=message_id).aggregate(
        targeted=Count("pk"),
        sent=Count("pk", filter=Q(sent_at__isnull=False)),
        delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
        opened=Count("pk", filter=Q(opened_at__isnull=False)),
        pending=Count("pk", filter=Q(status__in=OPEN_STATUSES)),
        **{
            name: Count("pk", filter=Q(status=name))
            for name in ("expired", "collapsed", "cancelled", "dropped")
        },
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_counters_equal_a_count_over_the_rows_after_any_sequence(world, ops):
    app, devices = world
    started = timezone.now() - timedelta(minutes=1)
    try:
        with transaction.atomic():
            for number, op in enumerate(ops):
                run(op, number, app, devices)
            ids = list(Message.objects.filter(app=app).values_list("pk", flat=True))
            assert {m: message_stats(m) for m in ids} == {m: counted(m) for m in ids}
            acked = Delivery.objects.filter(delivered_at__isnull=False).count()
            assert counters.delivered_since(started) == acked
            raise Rollback
    except Rollback:
        pass


def run(op, number, app, devices):
    kind = op[0]
    rows = list(Delivery.objects.filter(message__app=app).order_by("pk"))
    chosen = [rows[i % len(rows)] for i in op[1]] if rows and kind in _PICKS else []
    keyed = [(d.device_id, d.seq, str(d.message_id)) for d in chosen]
    if kind == "push":
        pushes.push_to_devices(
            app=app,
            device_ids=[devices[i].pk for i in op[1]],
            title=f"push {number}",
            collapse_key=op[2],
        )
    elif kind == "campaign":
        message = messages.message_create(app=app, title=f"campaign {number}")
        ids = [devices[i].pk for i in op[1]]
        for chunk in (ids[: op[2]], ids[op[2] :], ids[: op[2]]):
            with transaction.atomic():
                deliveries_write([(message, chunk)], skip_existing=True)
    elif kind in _PICKS:
        receipts.receipts_record(_PICKS[kind]([d.pk for d in chosen], keyed))
    elif kind in ("expire", "cancel"):
        message_ids = sorted({d.message_id for d in rows}, key=str)
        if not message_ids:
            return
        message_id = message_ids[op[1] % len(message_ids)]
        if kind == "cancel":
            receipts.deliveries_cancel(message_id=message_id)
        else:
            past = timezone.now() - timedelta(seconds=1)
            Delivery.objects.filter(message_id=message_id).update(expires_at=past)
            receipts.expire_due(now=timezone.now())
    else:
        device = Device.objects.get(pk=devices[op[1]].pk)
        resume.device_connect(
            device_id=device.pk,
            node="test-node",
            connection_id=f"c{number}",
            last_seq=max(0, device.last_seq - op[2]),
        )


_PICKS = {
    "sent": lambda ids, keyed: receipts.Receipts(sent=ids),
    "ack": lambda ids, keyed: receipts.Receipts(delivered=ids),
    "late": lambda ids, keyed: receipts.Receipts(acked_late=keyed),
    "open": lambda ids, keyed: receipts.Receipts(opened=keyed),
}


def test_a_message_from_before_counters_is_counted_on_first_read(world):
    """Rows written without counters (an older release): the first read
    writes the base row from a COUNT, and later receipts add to it."""
    app, devices = world
    message, _count = pushes.push_to_devices(
        app=app, device_ids=[d.pk for d in devices], title="old"
    )
    MessageCount.objects.filter(message_id=message.pk).delete()
    first = Delivery.objects.filter(message=message).order_by("pk").first()
    assert first is not None
    Delivery.objects.filter(pk=first.pk).update(
        status=DeliveryStatus.DELIVERED, delivered_at=timezone.now()
    )
    assert message_stats(message.pk) == counted(message.pk)
    assert message_stats(message.pk)["delivered"] == 1
    rest = Delivery.objects.filter(message=message).exclude(pk=first.pk)
    receipts.receipts_record(receipts.Receipts(delivered=[d.pk for d in rest]))
    assert message_stats(message.pk) == counted(message.pk)
    assert message_stats(message.pk)["delivered"] == DEVICES


def test_counts_survive_the_deletion_of_the_rows(world):
    app, devices = world
    message, _count = pushes.push_to_devices(
        app=app, device_ids=[d.pk for d in devices], title="kept"
    )
    before = message_stats(message.pk)
    Delivery.objects.filter(message=message).delete()
    assert message_stats(message.pk) == before
    assert before["targeted"] == DEVICES
    assert set(before) == set(STAT_NAMES)
