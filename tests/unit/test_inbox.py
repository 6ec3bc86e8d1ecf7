"""The inbox services: seq assignment, resume, limits, receipts."""

import pytest

from devices.delivery import messages, receipts, resume
from devices.delivery.enqueue import deliveries_write
from devices.models import Delivery, DeliveryStatus, Device
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db


def push(app, device, title):
    message = messages.message_create(app=app, title=title)
    return message, deliveries_write([(message, [device.pk])])[message.pk]


def connect(device, last_seq=0):
    return resume.device_connect(
        device_id=device.pk, node="n1", connection_id="c1", last_seq=last_seq
    )


def test_seqs_grow_by_one_per_device_and_repeats_are_skipped(app):
    device, _ = make_device(app)
    other, _ = make_device(app)
    message, targets = push(app, device, "a")
    assert [t.seq for t in targets] == [1]
    again = deliveries_write([(message, [device.pk, other.pk])], skip_existing=True)
    again = again[message.pk]
    assert [(t.device_id, t.seq) for t in again] == [(other.pk, 1)]
    _m, targets = push(app, device, "b")
    assert [t.seq for t in targets] == [2]
    assert Device.objects.get(pk=device.pk).last_seq == 2


def test_devices_of_other_apps_and_revoked_ones_get_nothing(app):
    stranger, _ = make_device(make_app())
    revoked, _ = make_device(app)
    Device.objects.filter(pk=revoked.pk).update(is_active=False)
    message = messages.message_create(app=app, title="t")
    written = deliveries_write([(message, [stranger.pk, revoked.pk])])
    assert written == {message.pk: []}


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
    receipts.receipts_record(receipts.Receipts(delivered=[pk]))
    # A late "sent" changes nothing.
    receipts.receipts_record(receipts.Receipts(sent=[pk]))
    row = Delivery.objects.get(pk=pk)
    assert row.status == DeliveryStatus.DELIVERED
    assert row.sent_at is not None and row.delivered_at is not None
    opened = [(device.pk, 1, str(message.pk))]
    receipts.receipts_record(receipts.Receipts(opened=opened))
    assert Delivery.objects.get(pk=pk).status == DeliveryStatus.OPENED


def test_acks_with_a_foreign_message_id_change_nothing(app):
    device, _ = make_device(app)
    victim, _ = make_device(app)
    message, targets = push(app, victim, "secret")
    late = [(device.pk, 1, str(message.pk))]
    receipts.receipts_record(receipts.Receipts(acked_late=late))
    assert Delivery.objects.get(pk=targets[0].delivery_id).status == "pending"


def test_a_batch_of_connects_sets_presence_and_replays_each_device(app):
    devices = [make_device(app)[0] for _ in range(3)]
    for index, device in enumerate(devices):
        for n in range(index + 1):
            push(app, device, f"{index}-{n}")
    requests = [
        resume.ConnectRequest(device.pk, f"conn-{i}", last_seq=1 if i == 2 else 0)
        for i, device in enumerate(devices)
    ]
    results = resume.devices_connect(node="n9", requests=requests)
    replays = {pk: [f["title"] for _s, _p, f in r.replay] for pk, r in results.items()}
    assert replays == {
        devices[0].pk: ["0-0"],
        devices[1].pk: ["1-0", "1-1"],
        devices[2].pk: ["2-1", "2-2"],
    }
    rows = Device.objects.filter(pk__in=[d.pk for d in devices]).order_by("acked_seq")
    assert [(d.node, d.acked_seq) for d in rows] == [("n9", 0), ("n9", 0), ("n9", 1)]
    assert {d.connection_id for d in rows} == {"conn-0", "conn-1", "conn-2"}
    assert not any(r.resync for r in results.values())


def test_a_batch_of_connects_asks_for_resync_only_where_drops_are_above_resume(
    app, settings
):
    """The batch's one grouped query compares each device's own resume point."""
    settings.KPNS = {**settings.KPNS, "MAX_PENDING_PER_DEVICE": 1}
    gap, past_gap, clean = (make_device(app)[0] for _ in range(3))
    for device in (gap, past_gap):
        for title in "abc":
            push(app, device, title)
        connect(device)  # seqs 1 and 2 dropped, 3 replayed
    push(app, clean, "x")
    connect(clean, last_seq=1)  # delivered, not dropped: checked, no gap
    requests = [
        resume.ConnectRequest(gap.pk, "g", last_seq=1),
        resume.ConnectRequest(past_gap.pk, "p", last_seq=2),
        resume.ConnectRequest(clean.pk, "c", last_seq=0),
    ]
    results = resume.devices_connect(node="n9", requests=requests)
    assert results[gap.pk].resync is True
    assert results[past_gap.pk].resync is False
    assert results[clean.pk].resync is False


def test_tokens_of_a_batch_of_handshakes_are_checked_in_one_call(app, settings):
    from devices.registry import services as registry

    ok, ok_token = make_device(app)
    revoked, revoked_token = make_device(app)
    Device.objects.filter(pk=revoked.pk).update(is_active=False)
    found = registry.device_ids_authenticate(
        tokens=[ok_token, revoked_token, "nope", "x" * 200, ""]
    )
    assert found == {ok_token: ok.pk}
    settings.KPNS = {**settings.KPNS, "DEVICE_TOKEN_TTL_DAYS": 1}
    Device.objects.filter(pk=ok.pk).update(
        node=None, last_seen_at="2000-01-01T00:00:00Z"
    )
    assert registry.device_ids_authenticate(tokens=[ok_token]) == {}
