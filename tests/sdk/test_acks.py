"""Cumulative, batched acks (protocol 1.1) of the Python SDK and `kpns listen`,
against a real Daphne: a burst of 500 pushes is acked in a few `ack_upto`
frames, the socket stays open, and every delivery ends `delivered`."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async

from devices.models import Device
from kpns_sdk import Client, MemoryStore
from kpns_sdk import client as client_module
from kpns_sdk.cli import main as cli_main
from kpns_sdk.protocol import Ack, AckUpto, codec_for
from tests.factories import make_app
from tests.sdk.control import burst, delivery_statuses
from tests.sdk.test_python_sdk import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BURST = 500


@pytest.fixture
def sent_frames(monkeypatch):
    """Every frame the SDK writes to a socket, decoded, in order."""
    frames = []
    real_connect = client_module.connect

    async def connect(*args, **kwargs):
        ws = await real_connect(*args, **kwargs)
        codec = codec_for(ws.subprotocol)
        real_send = ws.send

        async def send(message, *more, **options):
            frames.append(codec.decode_client(message))
            return await real_send(message, *more, **options)

        ws.send = send
        return ws

    monkeypatch.setattr(client_module, "connect", connect)
    return frames


def acks_in(frames):
    return [f for f in frames if isinstance(f, Ack | AckUpto)]


async def statuses(device_id):
    return await database_sync_to_async(delivery_statuses)(device_id)


async def send_burst(app, device_id, count):
    device = await database_sync_to_async(Device.objects.get)(pk=device_id)
    device.app = app
    return await database_sync_to_async(burst)(device, count)


def make_client(server, app, **options):
    errors, states = [], []
    client = Client(
        server.http_url,
        app.client_key,
        store=MemoryStore(),
        on_error=errors.append,
        on_state=states.append,
        **options,
    )
    return client, errors, states


@pytest.mark.timeout(120)
@pytest.mark.parametrize("encoding", ["json", "kmpp"])
async def test_a_burst_of_500_is_acked_in_a_few_ack_upto_frames(
    sdk_server, redis_layer, sent_frames, encoding
):
    app = await database_sync_to_async(make_app)()
    seqs = []
    client, errors, states = make_client(
        sdk_server, app, encoding=encoding, on_push=lambda p: seqs.append(p.seq)
    )
    async with client:
        await wait_for(lambda: client.state == "connected", what="connected")
        await send_burst(app, client.device_id, BURST)

        async def all_delivered():
            return (await statuses(client.device_id)) == {"delivered": BURST}

        await wait_for(lambda: client.last_seq == BURST, 60, "500 pushes handled")
        await wait_for(all_delivered, 30, "500 deliveries delivered")
        assert client.state == "connected"
    acks = acks_in(sent_frames)
    print(f"{encoding}: {len(acks)} ack frames for {BURST} pushes")
    assert seqs == list(range(1, BURST + 1))
    assert errors == []
    assert [s.state for s in states] == [
        "registering",
        "connecting",
        "connected",
        "stopped",
    ]
    assert client.stats.connects == 1
    assert all(isinstance(a, AckUpto) for a in acks), acks[:3]
    assert len(acks) <= 40, f"{len(acks)} acks for {BURST} pushes"
    assert acks[-1].seq == BURST
    assert [a.seq for a in acks] == sorted({a.seq for a in acks})
    assert client.stats.acks == len(acks)


@pytest.mark.timeout(60)
async def test_acks_wait_for_the_batch_or_the_delay_and_are_flushed_on_stop(
    sdk_server, redis_layer, sent_frames
):
    app = await database_sync_to_async(make_app)()
    client, errors, _ = make_client(sdk_server, app, ack_delay=60.0, ack_batch=4)
    client.start()
    await wait_for(lambda: client.state == "connected", what="connected")
    await send_burst(app, client.device_id, 10)
    await wait_for(lambda: client.last_seq == 10, what="10 pushes handled")

    async def eight_delivered():
        return (await statuses(client.device_id)) == {"delivered": 8, "sent": 2}

    await wait_for(eight_delivered, what="two full batches acked")
    assert [a.seq for a in acks_in(sent_frames)] == [4, 8]
    await client.stop()  # flushes the last two before closing
    assert [a.seq for a in acks_in(sent_frames)] == [4, 8, 10]

    async def all_delivered():
        return (await statuses(client.device_id)) == {"delivered": 10}

    await wait_for(all_delivered, what="the flushed ack recorded")
    assert errors == []

    # And without a full batch, the delay sends it.
    quick, errors, _ = make_client(sdk_server, app, ack_delay=0.2)
    sent_frames.clear()
    async with quick:
        await wait_for(lambda: quick.state == "connected", what="connected")
        await send_burst(app, quick.device_id, 3)
        await wait_for(lambda: quick.last_seq == 3, what="3 pushes handled")
        assert acks_in(sent_frames) == []
        await wait_for(lambda: acks_in(sent_frames), what="the delayed ack")
        assert acks_in(sent_frames) == [AckUpto(seq=3)]


@pytest.mark.timeout(120)
async def test_ack_each_sends_one_v1_ack_per_push(sdk_server, redis_layer, sent_frames):
    app = await database_sync_to_async(make_app)()
    client, errors, _ = make_client(sdk_server, app, ack_each=True, encoding="kmpp")
    async with client:
        await wait_for(lambda: client.state == "connected", what="connected")
        ids = await send_burst(app, client.device_id, 200)

        async def all_delivered():
            return (await statuses(client.device_id)) == {"delivered": 200}

        await wait_for(all_delivered, 60, "200 deliveries delivered")
        assert client.state == "connected"
    assert acks_in(sent_frames) == [
        Ack(id=message_id, seq=n) for n, message_id in enumerate(ids, 1)
    ]
    assert errors == []


@pytest.mark.timeout(120)
def test_kpns_listen_takes_a_burst_of_500_without_being_closed(
    sdk_server, redis_layer, sent_frames, tmp_path, capsys
):
    app = make_app()
    state = tmp_path / "device.json"
    args = ["listen", "--server", sdk_server.http_url, "--client-key"]
    args += [app.client_key, "--state", str(state), "--json", "--count", str(BURST)]
    codes = []
    listen = threading.Thread(target=lambda: codes.append(cli_main(args)))
    listen.start()
    try:
        for _ in range(200):
            online = Device.objects.filter(app=app, node__isnull=False).first()
            if online:
                break
            assert listen.is_alive()
            asyncio.run(asyncio.sleep(0.05))
        else:
            raise AssertionError("kpns listen did not connect")
        burst(online, BURST)
        listen.join(60)
        assert not listen.is_alive(), "kpns listen did not get 500 pushes"
    finally:
        listen.join(30)
    out, err = capsys.readouterr()
    assert codes == [0], err
    assert len(out.splitlines()) == BURST
    assert "error" not in err and "reconnecting" not in err, err
    acks = acks_in(sent_frames)
    print(f"kpns listen: {len(acks)} ack frames for {BURST} pushes")
    assert all(isinstance(a, AckUpto) for a in acks)
    assert len(acks) <= 40 and acks[-1].seq == BURST
    for _ in range(100):
        if delivery_statuses(online.pk) == {"delivered": BURST}:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert delivery_statuses(online.pk) == {"delivered": BURST}
