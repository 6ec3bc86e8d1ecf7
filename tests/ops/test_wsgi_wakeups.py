"""Wake-ups sent from a WSGI worker (kpns_site/wsgi.py): sync code in a
thread without an event loop, as gunicorn's gthread workers run the API.
They reach the node's channel on Redis and share one connection pool on
one long-lived loop (devices/layerloop.py), instead of a new event loop
and a new Redis connection for every push (what async_to_sync does)."""

import uuid

import pytest
import redis.asyncio.connection as redis_connection
from channels.layers import get_channel_layer

from devices.delivery import layerloop, wakeups
from devices.delivery.channelnames import node_channel
from devices.delivery.enqueue import Target

pytestmark = pytest.mark.e2e

PUSHES = 30


@pytest.fixture
def connects(monkeypatch):
    """Counts the Redis connections opened (any loop, any thread)."""
    opened = []
    connect = redis_connection.AbstractConnection.connect

    async def counted(self, *args, **kwargs):
        if not self.is_connected:  # pools call connect() before each use
            opened.append(self)
        return await connect(self, *args, **kwargs)

    monkeypatch.setattr(redis_connection.AbstractConnection, "connect", counted)
    return opened


def wake(node, count):
    for seq in range(1, count + 1):
        target = Target(device_id=uuid.uuid4(), seq=seq, delivery_id=seq, node=node)
        assert wakeups.wake_targets({"id": f"m{seq}"}, [target]) == 1


def test_wsgi_wakeups_share_one_redis_connection(redis_layer, connects, monkeypatch):
    monkeypatch.setattr(wakeups, "_own_loop", True)
    node = f"wsgi-{uuid.uuid4().hex[:8]}"
    wake(node, PUSHES)
    assert 1 <= len(connects) <= 2, len(connects)

    layer = get_channel_layer()
    received = [
        layerloop.run(layer.receive(node_channel(node)), 5) for _ in range(PUSHES)
    ]
    assert [event["push"]["id"] for event in received] == [
        f"m{seq}" for seq in range(1, PUSHES + 1)
    ]


def test_async_to_sync_wakeups_open_a_connection_each(redis_layer, connects):
    """Why the WSGI entry point turns the loop on: without it, every
    wake-up from a thread without a loop opens a Redis connection."""
    wake(f"wsgi-{uuid.uuid4().hex[:8]}", 5)
    assert len(connects) >= 5, len(connects)


def test_wsgi_push_wakeups_are_sent_without_holding_the_request(
    redis_layer, monkeypatch
):
    """wake_batch_soon returns before Redis answers (the pushes are
    committed); the event still reaches the node's channel, in order."""
    monkeypatch.setattr(wakeups, "_own_loop", True)
    node = f"soon-{uuid.uuid4().hex[:8]}"
    for seq in range(1, PUSHES + 1):
        target = Target(device_id=uuid.uuid4(), seq=seq, delivery_id=seq, node=node)
        assert wakeups.wake_batch_soon([({"id": f"m{seq}"}, [target])]) is None
    layer = get_channel_layer()
    received = [
        layerloop.run(layer.receive(node_channel(node)), 5) for _ in range(PUSHES)
    ]
    assert sorted(event["pushes"][0]["push"]["id"] for event in received) == sorted(
        f"m{seq}" for seq in range(1, PUSHES + 1)
    )
    assert all(event["type"] == "node.deliver_batch" for event in received)
