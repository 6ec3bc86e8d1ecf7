"""A push that loses a deadlock is written again, never answered 503.

Device rows are locked in the order of each statement's plan (a campaign
chunk's in table order, a few devices' in id order: docs/architecture.md),
so a push can meet a transaction that holds its devices in the other
order. PostgreSQL aborts one of the two (40P01); the push is a whole
transaction and runs again (devices.delivery.pushes.push_batch_apps)."""

import threading
import time

import pytest
from django.db import OperationalError, connection, connections, transaction

from devices.delivery import pushes
from devices.models import Delivery, Device
from tests.factories import make_device

pytestmark = pytest.mark.django_db(transaction=True)


def waiting_on_a_lock(backend_pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
            [backend_pid],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def lock_now(device: Device) -> bool:
    """Lock the device's row, or False at once if another holds it."""
    try:
        with transaction.atomic():  # a savepoint: a refusal undoes only it
            Device.objects.select_for_update(nowait=True).filter(pk=device.pk).exists()
    except OperationalError:
        return False
    return True


def staged_deadlock(app, held: Device, other: Device) -> tuple[bool, list, list]:
    """Hold `held`, let a push to both wait for it, then take `other`:
    a deadlock when the push locked `other` first. Returns whether it was
    staged, and the push's results and errors."""
    results: list[int] = []
    errors: list[BaseException] = []
    pid: list[int] = []

    def push() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid.append(cursor.fetchone()[0])
            results.append(
                pushes.push_to_devices(
                    app=app, device_ids=[held.pk, other.pk], title="both"
                )[1]
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=push)
    with transaction.atomic():
        # This side waits 10 s before looking for a cycle, the push's the
        # default 1 s: PostgreSQL aborts the push's transaction, not ours.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL deadlock_timeout = '10s'")
        Device.objects.select_for_update().filter(pk=held.pk).exists()
        thread.start()
        deadline = time.monotonic() + 10
        while not pid or not waiting_on_a_lock(pid[0]):
            assert time.monotonic() < deadline, "the push never waited"
            time.sleep(0.01)
        staged = not lock_now(other)
        if staged:
            # The push holds `other` and waits for `held`: close the cycle.
            Device.objects.select_for_update().filter(pk=other.pk).exists()
    thread.join(30)
    return staged, results, errors


def test_a_push_that_loses_a_deadlock_is_written_again(app):
    if connection.vendor != "postgresql":
        pytest.skip("row locks held by another connection need PostgreSQL")
    first, second = make_device(app)[0], make_device(app)[0]
    # The push locks one of its two devices first; hold the other.
    staged, results, errors = staged_deadlock(app, first, second)
    pushes_run = 1
    if not staged:
        staged, results, errors = staged_deadlock(app, second, first)
        pushes_run = 2
    assert staged, "the push locked neither device before waiting"
    assert errors == []
    assert results == [2]
    # Written once per push: no seq lost or taken twice by the retry.
    for device in (first, second):
        seqs = Delivery.objects.filter(device=device).values_list("seq", flat=True)
        assert sorted(seqs) == list(range(1, pushes_run + 1))
