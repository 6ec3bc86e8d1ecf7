"""A node's fair share of the online devices (devices/rebalance.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from devices.delivery.rebalance import fair_excess
from devices.models import Device
from devices.models import Node as NodeRow
from tests.factories import make_device

pytestmark = pytest.mark.django_db


def node(name, *, age=0.0, draining=False):
    beat = timezone.now() - timedelta(seconds=age)
    NodeRow.objects.create(
        name=name,
        channel_name=f"kpns.node.{name}",
        hostname="h",
        pid=1,
        started_at=beat,
        heartbeat_at=beat,
        draining=draining,
    )


def online(app, name, count):
    for _ in range(count):
        device, _token = make_device(app)
        Device.objects.filter(pk=device.pk).update(node=name, connection_id="c")


def test_a_node_above_its_share_sheds_the_excess(app):
    node("a")
    node("b")
    online(app, "b", 10)
    assert fair_excess(node="a", held=90) == 40  # fair share: 100 / 2


def test_within_the_slack_nothing_moves(app):
    node("a")
    node("b")
    online(app, "b", 45)
    assert fair_excess(node="a", held=55) == 0


def test_dead_and_draining_nodes_take_no_share(app):
    node("a")
    node("b")
    node("dead", age=3600)
    node("leaving", draining=True)
    online(app, "b", 20)
    online(app, "dead", 30)
    online(app, "leaving", 30)
    assert fair_excess(node="a", held=80) == 30  # (80 + 20) / 2


def test_a_node_alone_or_unknown_keeps_everything(app):
    node("a")
    assert fair_excess(node="a", held=500) == 0
    assert fair_excess(node="unregistered", held=500) == 0


def test_a_crashed_node_not_yet_reaped_takes_no_share(app, settings):
    """Its heartbeat stopped two periods ago: it is not counted, although
    other nodes reap it only after NODE_DEAD_AFTER_SECONDS."""
    settings.KPNS = {**settings.KPNS, "NODE_HEARTBEAT_SECONDS": 5.0}
    node("a")
    node("b")
    node("crashed", age=11)  # > 2 periods, < the 20 s dead-after
    online(app, "b", 50)
    assert fair_excess(node="a", held=50) == 0


def test_shedding_waits_for_the_excess_to_be_measured_three_times_in_a_row():
    class FakeNode:
        sessions: dict = {}
        draining = False

    from devices.delivery.rebalance import CONFIRMATIONS, Rebalancer

    rebalancer = Rebalancer(FakeNode())
    for _ in range(CONFIRMATIONS - 1):
        rebalancer.plan(100, 5.0)
        assert rebalancer.budget == 0
    rebalancer.plan(0, 5.0)  # the excess went away: start again
    for _ in range(CONFIRMATIONS - 1):
        rebalancer.plan(100, 5.0)
    assert rebalancer.budget == 0
    rebalancer.plan(100, 5.0)
    assert rebalancer.budget == 100  # min(excess, 50 a second x 5 s)
