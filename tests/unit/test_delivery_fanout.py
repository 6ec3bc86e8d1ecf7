"""A campaign costs one layer event per node (per 5,000 targets), not per device."""

import uuid

from channels.layers import get_channel_layer

from devices.delivery.channelnames import node_channel
from devices.delivery.enqueue import Target
from devices.delivery.wakeups import TARGETS_PER_EVENT, awake_targets

PUSH = {"id": "m1", "title": "t", "expires_at": 0}


async def test_targets_are_batched_per_node_and_offline_ones_skipped():
    run = uuid.uuid4().hex[:8]
    targets = [
        Target(device_id=uuid.uuid4(), seq=1, delivery_id=i, node=f"n{i % 2}-{run}")
        for i in range(6000)
    ] + [Target(device_id=uuid.uuid4(), seq=1, delivery_id=-1, node=None)]
    sent = await awake_targets(PUSH, targets)
    # 3,000 per node fit one event each.
    assert sent == 2
    layer = get_channel_layer()
    for node in (f"n0-{run}", f"n1-{run}"):
        event = await layer.receive(node_channel(node))
        assert event["type"] == "node.deliver"
        assert len(event["targets"]) == 3000
        assert event["push"] == PUSH


async def test_large_node_share_is_split_into_bounded_events():
    big = f"big-{uuid.uuid4().hex[:8]}"  # a fresh channel, even on a shared Redis
    targets = [
        Target(device_id=uuid.uuid4(), seq=1, delivery_id=i, node=big)
        for i in range(TARGETS_PER_EVENT * 2 + 1)
    ]
    assert await awake_targets(PUSH, targets) == 3
    layer = get_channel_layer()
    sizes = [len((await layer.receive(node_channel(big)))["targets"]) for _ in range(3)]
    # channels-redis orders a channel by send time only to the millisecond,
    # so events may arrive in any order: sessions never rely on it.
    assert sorted(sizes) == [1, TARGETS_PER_EVENT, TARGETS_PER_EVENT]


async def test_a_push_batch_costs_one_event_per_node_with_its_messages_in_order():
    from devices.delivery.wakeups import awake_batch

    node = f"batch-{uuid.uuid4().hex[:8]}"
    device = uuid.uuid4()
    batch = [
        (
            {**PUSH, "id": f"m{n}"},
            [Target(device_id=device, seq=n + 1, delivery_id=n, node=node)],
        )
        for n in range(300)
    ] + [({**PUSH, "id": "offline"}, [Target(uuid.uuid4(), 1, 999, None)])]
    assert await awake_batch(batch) == 1
    event = await get_channel_layer().receive(node_channel(node))
    assert event["type"] == "node.deliver_batch"
    assert [entry["push"]["id"] for entry in event["pushes"]] == [
        f"m{n}" for n in range(300)
    ]
    assert event["pushes"][7]["targets"] == [[str(device), 8, 7]]
