"""A reconnect storm must not queue token checks without bound
(devices/delivery/consumer.py): past KPNS_MAX_PENDING_HANDSHAKES checks in
flight a new socket is accepted and closed 4503 (try again later) without
a query, so hello batches keep their database threads; a drain of 19,000
sockets onto one process welcomed no device before (docs/operations.md,
"Drains at full size")."""

import pytest

from devices.delivery import consumer, metrics
from devices.delivery.protocol import JSON, Hello, Welcome
from devices.registry import services as registry
from tests.consumers.test_device_consumer import (
    open_socket,
    receive,
    send,
    setup_device,
)


def busy_refusals() -> float:
    """Counted in the loop's stats until they are published (every second,
    which replaces the stats object), then in the Prometheus counter."""
    published = 0.0
    for family in metrics.HANDSHAKES_REFUSED.collect():
        for sample in family.samples:
            busy = sample.labels.get("reason") == "database_busy"
            if busy and sample.name.endswith("_total"):
                published = sample.value
    return published + metrics.stats.refused_by.get("database_busy", 0)


pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("stop_nodes"),
]


@pytest.fixture
def two_checks(settings):
    settings.KPNS = {**settings.KPNS, "MAX_PENDING_HANDSHAKES": 2}


async def test_past_the_bound_a_socket_is_closed_4503_without_a_query(
    two_checks, monkeypatch
):
    _app, _device, token = await setup_device()
    queried = []
    real = registry.device_ids_authenticate

    def counted(**kwargs):
        queried.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(registry, "device_ids_authenticate", counted)
    # Two checks of other sockets in flight, as in a storm.
    monkeypatch.setitem(consumer._token_checks, "running", 2)
    refused_before = busy_refusals()
    communicator, connected, _ = await open_socket(token)
    assert connected
    closed = await communicator.receive_output(5)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4503)
    assert queried == []
    assert busy_refusals() == refused_before + 1
    await communicator.disconnect()


async def test_below_the_bound_the_check_runs_and_its_slot_is_given_back(
    two_checks,
):
    _app, _device, token = await setup_device()
    communicator, connected, _ = await open_socket(token)
    assert connected
    await send(communicator, JSON, Hello(last_seq=0))
    assert isinstance(await receive(communicator), Welcome)
    assert consumer._token_checks["running"] == 0
    await communicator.disconnect()
