"""The one write path (devices/enqueue.py) against a model of the rules.

Hypothesis generates sequences of sends through every caller: single API
pushes, batches, campaign chunks (one written twice, as after a scheduler
crash), pushes with collapse keys and idempotent API retries. After each
sequence the delivery rows must be exactly what the model predicts: each
active device of the app gets each message once, at its next seq in send
order; a collapse key retires the device's older open deliveries with that
key. The suite runs on SQLite and on PostgreSQL (CI runs both), so both
databases' strategies produce the same rows.
"""

import json
import uuid
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.delivery import messages, pushes
from devices.delivery.enqueue import deliveries_write
from devices.models import Delivery, Device
from tests.factories import make_api_key, make_app, make_device

pytestmark = pytest.mark.django_db

ACTIVE = 4  # devices 0-3 are the app's active devices
INACTIVE = 4  # device 4 is revoked
FOREIGN = 5  # device 5 belongs to another app

device_index = st.integers(min_value=0, max_value=5)
device_list = st.lists(device_index, max_size=7)
collapse_key = st.sampled_from(["", "", "news", "score"])

single = st.tuples(st.just("single"), device_list, collapse_key)
batch = st.tuples(
    st.just("batch"),
    st.lists(st.tuples(device_list, collapse_key), min_size=1, max_size=3),
)
campaign = st.tuples(st.just("campaign"), device_list, st.integers(0, 7))
# The API refuses an empty device_ids list (400): name at least one.
idempotent = st.tuples(st.just("idempotent"), st.lists(device_index, min_size=1))
operations = st.lists(st.one_of(single, batch, campaign, idempotent), max_size=6)


@dataclass
class Model:
    """What the rows must be, computed without the database."""

    seqs: dict[int, int] = field(default_factory=dict)
    rows: dict[tuple[str, int], list] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def send(self, label: str, devices: list[int], key: str = "") -> None:
        self.keys.setdefault(label, key)
        for device in dict.fromkeys(devices):
            if device >= ACTIVE or (label, device) in self.rows:
                continue
            if key:
                for (other, holder), row in self.rows.items():
                    same_key = self.keys[other] == key and other != label
                    if holder == device and same_key and row[1] == "pending":
                        row[1] = "collapsed"
            self.seqs[device] = self.seqs.get(device, 0) + 1
            self.rows[(label, device)] = [self.seqs[device], "pending"]


class Rollback(Exception):
    pass


@pytest.fixture
def world(db):
    app = make_app()
    devices = [make_device(app)[0] for _ in range(5)]
    Device.objects.filter(pk=devices[INACTIVE].pk).update(is_active=False)
    devices.append(make_device(make_app())[0])
    _key, secret = make_api_key(app, ["push:send"])
    return app, devices, secret


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_every_caller_writes_the_rows_the_model_predicts(world, ops):
    app, devices, secret = world
    try:
        with transaction.atomic():
            model = Model()
            labels = {}  # message id -> label
            for number, op in enumerate(ops):
                run(op, number, app, devices, secret, model, labels)
            found = {
                (labels[d.message_id], devices.index(_device(devices, d.device_id))): [
                    d.seq,
                    d.status,
                ]
                for d in Delivery.objects.filter(message_id__in=list(labels))
            }
            assert found == model.rows
            raise Rollback
    except Rollback:
        pass


def _device(devices, device_id):
    return next(d for d in devices if d.pk == device_id)


def run(op, number, app, devices, secret, model, labels):
    kind = op[0]
    # Callers pass UUIDs or their text: every other device as text.
    ids = lambda indices: [  # noqa: E731
        devices[i].pk if n % 2 else str(devices[i].pk) for n, i in enumerate(indices)
    ]
    if kind == "single":
        _kind, targets, key = op
        label = f"single-{number}"
        message, _count = pushes.push_to_devices(
            app=app, device_ids=ids(targets), title=label, collapse_key=key
        )
        labels[message.pk] = label
        model.send(label, targets, key)
    elif kind == "batch":
        plans = []
        for index, (targets, key) in enumerate(op[1]):
            label = f"batch-{number}-{index}"
            message = messages.message_build(app=app, title=label, collapse_key=key)
            labels[message.pk] = label
            plans.append((message, ids(targets)))
            model.keys[label] = key
        pushes.push_batch(app=app, plans=plans)
        for index, (targets, key) in enumerate(op[1]):
            model.send(f"batch-{number}-{index}", targets, key)
    elif kind == "campaign":
        _kind, targets, cut = op
        label = f"campaign-{number}"
        message = messages.message_create(app=app, title=label)
        labels[message.pk] = label
        first, rest = targets[:cut], targets[cut:]
        # The sender's call, with the first chunk written again.
        for chunk in (first, rest, first):
            deliveries_write([(message, ids(chunk))], skip_existing=True)
        model.send(label, targets)
    else:
        _kind, targets = op
        label = f"idempotent-{number}"
        body = json.dumps(
            {"device_ids": [str(i) for i in ids(targets)], "title": label}
        )
        answers = [
            Client().post(
                "/api/v1/pushes",
                data=body,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {secret}",
                HTTP_IDEMPOTENCY_KEY=f"key-{number}",
            )
            for _ in range(2)
        ]
        assert [a.status_code for a in answers] == [202, 202], answers[0].content
        assert answers[0].json() == answers[1].json()
        labels[uuid.UUID(answers[0].json()["message_id"])] = label
        model.send(label, targets)


def test_a_write_of_messages_of_two_apps_is_refused(world):
    app, devices, _secret = world
    mine = messages.message_create(app=app, title="mine")
    theirs = messages.message_create(app=make_app(), title="theirs")
    with pytest.raises(ValueError, match="one app"):
        deliveries_write([(mine, [devices[0].pk]), (theirs, [devices[5].pk])])
