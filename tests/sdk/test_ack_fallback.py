"""The Python SDK against a server before protocol 1.1 (a stand-in speaking
the wire format): `ack_upto` is answered `unknown_type`, so the client acks
each push with v1 `ack` from then on."""

import asyncio

import pytest
from websockets.asyncio.server import serve

from devices.delivery.protocol import JSON, Ack, AckUpto, Error, Hello, Push, Welcome
from kpns_sdk import Client, MemoryStore
from tests.sdk.test_python_sdk import wait_for


def push(seq):
    return Push(
        id=f"m{seq}", seq=seq, title=f"t{seq}", body="", url="", image="", data={},
        priority="normal", collapse_key=None, sent_at=0, expires_at=2**40,
    )  # fmt: skip


@pytest.mark.timeout(30)
async def test_a_server_without_ack_upto_gets_one_ack_per_push():
    received = []  # frames from the client, decoded
    more = asyncio.Event()

    async def old_server(ws):
        async for data in ws:
            frame = JSON.decode_client(data)
            received.append(frame)
            if isinstance(frame, Hello):
                await ws.send(JSON.encode(Welcome("d1", 0, 25, 4096)))
                for seq in (1, 2, 3):
                    await ws.send(JSON.encode(push(seq)))
            elif isinstance(frame, AckUpto):  # what a 1.0 server answers
                message = "unknown frame type 'ack_upto'"
                await ws.send(JSON.encode(Error("unknown_type", message)))
                await more.wait()
                for seq in (4, 5):
                    await ws.send(JSON.encode(push(seq)))

    async with serve(old_server, "127.0.0.1", 0, subprotocols=["kpns.json.v1"]) as srv:
        url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        store = MemoryStore()
        store.save({"server": url, "client_key": "ck", "device_id": "d1",
                    "token": "t", "last_seq": 0})  # fmt: skip
        errors = []
        client = Client(url, store=store, on_error=errors.append, ack_delay=0.05)
        async with client:
            await wait_for(lambda: errors, what="the unknown_type error")
            more.set()
            await wait_for(lambda: client.last_seq == 5, what="pushes 4 and 5")
            await wait_for(lambda: len(received) == 4, what="their acks")
    assert received == [
        Hello(last_seq=0),
        AckUpto(seq=3),
        Ack(id="m4", seq=4),
        Ack(id="m5", seq=5),
    ]
    assert [e.code for e in errors] == ["unknown_type"]
