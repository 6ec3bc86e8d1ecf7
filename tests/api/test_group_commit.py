"""Group commit: concurrent pushes of one process share one transaction,
each answered after that commit, each failing on its own."""

import threading
import time
import uuid
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections

from devices.delivery import groupcommit, targeting
from devices.delivery.channelnames import node_channel
from devices.models import Delivery, Device, Message
from tests.api.conftest import ApiClient
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8


@pytest.fixture
def long_window(settings):
    # Long enough that every thread joins before the leader writes: the
    # leader waits only while requests are still arriving.
    settings.KPNS = {**settings.KPNS, "PUSH_GROUP_WAIT_SECONDS": 5.0}


def run_together(count: int, work: Any) -> tuple[list[Any], list[BaseException | None]]:
    """`work(index, arrival)` in `count` threads that all arrive before any
    sends; returns each thread's result and error."""
    group = groupcommit.push_group()
    arrived = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException | None] = [None] * count

    def one(index: int) -> None:
        try:
            with group.arriving() as arrival:
                arrived.wait(10)
                results[index] = work(index, arrival)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


def committed_elsewhere(message_id: Any) -> int:
    """Delivery rows of the message seen from a connection of a new thread."""
    seen: list[int] = []

    def look() -> None:
        try:
            seen.append(Delivery.objects.filter(message_id=message_id).count())
        finally:
            connections.close_all()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(30)
    return seen[0]


def test_concurrent_pushes_share_one_transaction(app, long_window):
    devices = [make_device(app)[0] for _ in range(THREADS)]
    group = groupcommit.push_group()
    groups_before, pushes_before = group.groups, group.pushes

    def send(index: int, arrival: Any) -> tuple[Any, int, int]:
        result = targeting.push_send(
            app=app,
            device_ids=[str(devices[index].pk)],
            title=f"to {index}",
            group=arrival,
        )
        message_id = result.message.pk
        # Answered only once committed: another connection sees the row.
        return message_id, result.targets, committed_elsewhere(message_id)

    results, errors = run_together(THREADS, send)
    assert errors == [None] * THREADS
    assert [targets for _id, targets, _seen in results] == [1] * THREADS
    assert [seen for _id, _targets, seen in results] == [1] * THREADS
    # One transaction for the eight pushes.
    assert (group.groups - groups_before, group.pushes - pushes_before) == (1, 8)
    for index, (message_id, _targets, _seen) in enumerate(results):
        row = Delivery.objects.get(message_id=message_id)
        assert (row.device_id, row.seq) == (devices[index].pk, 1)
    assert Message.objects.count() == THREADS


def test_a_push_failing_its_checks_does_not_fail_the_others(app, long_window):
    devices = [make_device(app)[0] for _ in range(THREADS)]
    group = groupcommit.push_group()
    groups_before, pushes_before = group.groups, group.pushes

    def send(index: int, arrival: Any) -> Any:
        title = "" if index == 3 else f"to {index}"  # a title is required
        result = targeting.push_send(
            app=app, device_ids=[str(devices[index].pk)], title=title, group=arrival
        )
        return result.message.pk

    results, errors = run_together(THREADS, send)
    assert isinstance(errors[3], ValidationError)
    assert "title" in errors[3].message_dict
    assert [e for i, e in enumerate(errors) if i != 3] == [None] * (THREADS - 1)
    # The bad one never joined: the seven others share one transaction.
    assert (group.groups - groups_before, group.pushes - pushes_before) == (1, 7)
    assert Delivery.objects.count() == THREADS - 1
    assert not Delivery.objects.filter(device=devices[3]).exists()


def test_a_push_failing_in_the_database_does_not_fail_the_others(app, long_window):
    devices = [make_device(app)[0] for _ in range(THREADS)]
    taken = targeting.push_send(
        app=app, device_ids=[str(devices[0].pk)], title="x"
    ).message
    group = groupcommit.push_group()
    pushes_before = group.pushes

    def send(index: int, arrival: Any) -> Any:
        from devices.delivery import messages

        message = messages.message_build(app=app, title=f"to {index}")
        if index == 5:
            message.id = taken.pk  # its INSERT breaks the primary key
        return arrival.send(app=app, message=message, device_ids=[devices[index].pk])

    results, errors = run_together(THREADS, send)
    assert isinstance(errors[5], IntegrityError)
    assert [e for i, e in enumerate(errors) if i != 5] == [None] * (THREADS - 1)
    assert [r for i, r in enumerate(results) if i != 5] == [1] * (THREADS - 1)
    assert group.pushes - pushes_before == THREADS
    # The group rolled back, then each push was written on its own: every
    # device but the sixth got its push once, at the next seq.
    for index, device in enumerate(devices):
        expected = (1 if index == 0 else 0) + (0 if index == 5 else 1)
        assert Delivery.objects.filter(device=device).count() == expected
        assert Device.objects.get(pk=device.pk).last_seq == expected


def test_a_group_wakes_each_node_once(app, long_window):
    run = uuid.uuid4().hex[:8]
    nodes = [f"gc-a-{run}", f"gc-b-{run}"]
    devices = [make_device(app)[0] for _ in range(THREADS)]
    for index, device in enumerate(devices):
        Device.objects.filter(pk=device.pk).update(node=nodes[index % 2])

    def send(index: int, arrival: Any) -> Any:
        return targeting.push_send(
            app=app, device_ids=[str(devices[index].pk)], title="w", group=arrival
        ).message.pk

    results, errors = run_together(THREADS, send)
    assert errors == [None] * THREADS
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    for node in nodes:
        event = async_to_sync(layer.receive)(node_channel(node))
        assert event["type"] == "node.deliver_batch"
        assert sorted(entry["push"]["id"] for entry in event["pushes"]) == sorted(
            str(results[i]) for i in range(THREADS) if nodes[i % 2] == node
        )


def test_a_lone_push_does_not_wait_for_the_window(app, settings):
    """One sender, one push at a time: nobody else is arriving, so the
    leader writes at once (a 5 s window would fail the test's timeout)."""
    settings.KPNS = {**settings.KPNS, "PUSH_GROUP_WAIT_SECONDS": 30.0}
    device, _ = make_device(app)
    client = ApiClient(make_api_key(app)[1])
    for _ in range(3):
        response = client.post(
            "/api/v1/pushes", {"device_ids": [str(device.pk)], "title": "one"}
        )
        assert response.status_code == 202, response.content
    assert Delivery.objects.filter(device=device).count() == 3


def test_concurrent_requests_are_each_answered_with_their_own_push(app):
    devices = [make_device(app)[0] for _ in range(THREADS)]
    key = make_api_key(app)[1]
    barrier = threading.Barrier(THREADS)
    answers: list[Any] = [None] * THREADS

    def post(index: int) -> None:
        client = ApiClient(key)
        barrier.wait(10)
        try:
            body = {"device_ids": [str(devices[index].pk)], "title": f"t{index}"}
            if index == 2:
                body["ttl_seconds"] = -1  # invalid: a 400 of its own
            answers[index] = client.post("/api/v1/pushes", body)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers[2].status_code == 400
    for index, answer in enumerate(answers):
        if index == 2:
            continue
        assert answer.status_code == 202, answer.content
        message = Message.objects.get(pk=answer.json()["message_id"])
        assert message.title == f"t{index}"
        assert list(
            Delivery.objects.filter(message=message).values_list("device_id", flat=True)
        ) == [devices[index].pk]


def test_pushes_arriving_while_a_group_is_written_form_the_next_group(app):
    """One group in flight per process: the first push's write is held by
    a row lock; four pushes arriving meanwhile wait and share one group."""
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("row locks held by another connection need PostgreSQL")
    devices = [make_device(app)[0] for _ in range(5)]
    group = groupcommit.push_group()
    groups_before, pushes_before = group.groups, group.pushes
    errors: list[BaseException] = []

    def send(device: Device) -> None:
        try:
            targeting.push_send(
                app=app,
                device_ids=[str(device.pk)],
                title="q",
                group=group.arriving().__enter__(),
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    with transaction.atomic():
        # Hold the first device's row: the first group's UPDATE waits on it.
        Device.objects.select_for_update().filter(pk=devices[0].pk).exists()
        first = threading.Thread(target=send, args=(devices[0],))
        first.start()
        deadline = time.monotonic() + 10
        while group._writing == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert group._writing == 1
        others = [threading.Thread(target=send, args=(d,)) for d in devices[1:]]
        for thread in others:
            thread.start()
        while len(group._waiting) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(group._waiting) == 4  # waiting for the group in flight
    for thread in [first, *others]:
        thread.join(30)
    assert errors == []
    assert (group.groups - groups_before, group.pushes - pushes_before) == (2, 5)
    assert Delivery.objects.count() == 5
