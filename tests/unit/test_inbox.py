"""The inbox services: seq assignment, resume, limits, receipts."""

import pytest

from devices import inbox
from devices.models import Delivery, DeliveryStatus, Device
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db


def push(app, device, title):
    message = inbox.message_create(app=app, title=title)
    return message, inbox.deliveries_enqueue(message=message, device_ids=[device.pk])


def connect(device, last_seq=0):
    return inbox.device_connect(
        device_id=device.pk, node="n1", connection_id="c1", last_seq=last_seq
    )


def test_seqs_grow_by_one_per_device_and_repeats_are_skipped(app):
    device, _ = make_device(app)
    other, _ = make_device(app)
    message, targets = push(app, device, "a")
    assert [t.seq for t in targets] == [1]
    again = inbox.deliveries_enqueue(message=message, device_ids=[device.pk, other.pk])
    assert [(t.device_id, t.seq) for t in again] == [(other.pk, 1)]
    _m, targets = push(app, device, "b")
    assert [t.seq for t in targets] == [2]
    assert Device.objects.get(pk=device.pk).last_seq == 2


def test_devices_of_other_apps_and_revoked_ones_get_nothing(app):
    stranger, _ = make_device(make_app())
    revoked, _ = make_device(app)
    Device.objects.filter(pk=revoked.pk).update(is_active=False)
    message = inbox.message_create(app=app, title="t")
    assert (
        inbox.deliveries_enqueue(message=message, device_ids=[stranger.pk, revoked.pk])
        == []
    )


def test_backlog_over_the_limit_drops_the_oldest_and_asks_for_resync(app, settings):
    settings.KPNS = {**settings.KPNS, "MAX_PENDING_PER_DEVICE": 2}
    device, _ = make_device(app)
    for title in "abcd":
        push(app, device, title)
    result = connect(device)
    assert [(seq, fields["title"]) for seq, _pk, fields in result.replay] == [
        (3, "c"),
        (4, "d"),
    ]
    assert result.resync is True
    statuses = dict(Delivery.objects.values_list("seq", "status"))
    assert statuses[1] == statuses[2] == DeliveryStatus.DROPPED
    assert connect(device, last_seq=0).resync is True  # still a gap for this app
    assert connect(device, last_seq=4).resync is False


def test_resume_marks_processed_as_delivered_and_never_moves_acked_back(app):
    device, _ = make_device(app)
    for title in "abc":
        push(app, device, title)
    result = connect(device, last_seq=2)
    assert [seq for seq, _pk, _f in result.replay] == [3]
    assert Device.objects.get(pk=device.pk).acked_seq == 2
    connect(device, last_seq=1)
    assert Device.objects.get(pk=device.pk).acked_seq == 2
    statuses = dict(Delivery.objects.values_list("seq", "status"))
    assert statuses == {1: "delivered", 2: "delivered", 3: "pending"}


def test_claimed_last_seq_beyond_the_server_is_clamped(app):
    device, _ = make_device(app)
    push(app, device, "a")
    result = connect(device, last_seq=99)
    assert result.replay == []
    assert Device.objects.get(pk=device.pk).acked_seq == 1


def test_receipts_move_forward_only(app):
    device, _ = make_device(app)
    message, targets = push(app, device, "a")
    pk = targets[0].delivery_id
    inbox.receipts_record(inbox.Receipts(delivered=[pk]))
    inbox.receipts_record(inbox.Receipts(sent=[pk]))  # late "sent" changes nothing
    row = Delivery.objects.get(pk=pk)
    assert row.status == DeliveryStatus.DELIVERED
    assert row.sent_at is not None and row.delivered_at is not None
    inbox.receipts_record(inbox.Receipts(opened=[(device.pk, 1, str(message.pk))]))
    assert Delivery.objects.get(pk=pk).status == DeliveryStatus.OPENED


def test_acks_with_a_foreign_message_id_change_nothing(app):
    device, _ = make_device(app)
    victim, _ = make_device(app)
    message, targets = push(app, victim, "secret")
    inbox.receipts_record(inbox.Receipts(acked_late=[(device.pk, 1, str(message.pk))]))
    assert Delivery.objects.get(pk=targets[0].delivery_id).status == "pending"
