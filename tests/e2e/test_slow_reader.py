"""A device that stops reading gets every frame whole and in order once it
reads again: the server sends what the kernel takes at once
(devices/eagerwrite.py) and buffers the rest in Twisted's transport, across
partial sends, without reordering or losing a byte."""

import asyncio
import socket

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from devices.delivery.protocol import JSON, Ack, Hello, Push, Welcome
from devices.models import Device
from tests.e2e.servers import daphne_servers
from tests.factories import make_api_key, make_app, make_device

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PUSHES = 200
BLOB = 3500  # bytes of data per push: 700 KB in all, far past the socket buffers


def setup_world():
    app = make_app(name="Slow")
    device, token = make_device(app)
    _, key = make_api_key(app, scopes=["push:send"])
    return device, token, key


async def test_a_device_that_stops_reading_gets_every_frame_whole(redis_url, tmp_path):
    device, token, key = await database_sync_to_async(setup_world)()
    with daphne_servers(1, redis_url=redis_url, tmp_path=tmp_path) as servers:
        server = servers[0]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        # max_queue=1: the client stops reading the socket once one frame
        # waits, so the server's sends soon meet a full window.
        ws = await websockets.connect(
            server.ws_url,
            sock=sock,
            subprotocols=[JSON.name, f"kpns.token.{token}"],
            max_queue=1,
            open_timeout=10,
        )
        await ws.send(JSON.encode(Hello(last_seq=0)))
        assert isinstance(JSON.decode_server(await ws.recv()), Welcome)
        for _ in range(100):
            online = await database_sync_to_async(
                Device.objects.filter(pk=device.pk, node__isnull=False).exists
            )()
            if online:
                break
            await asyncio.sleep(0.05)

        async with httpx.AsyncClient(
            base_url=server.http_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as api:
            for start in range(0, PUSHES, 50):
                items = [
                    {
                        "device_ids": [str(device.pk)],
                        "title": f"push {n}",
                        "data": {"n": n, "blob": chr(65 + n % 26) * BLOB},
                    }
                    for n in range(start, start + 50)
                ]
                answer = await api.post(
                    "/api/v1/pushes/batch", json={"messages": items}
                )
                assert answer.status_code == 200, answer.text
                assert {r["status"] for r in answer.json()["results"]} == {202}
        await asyncio.sleep(1.0)  # the server writes into a closed window

        for n in range(PUSHES):
            frame = JSON.decode_server(await asyncio.wait_for(ws.recv(), 10))
            assert isinstance(frame, Push), frame
            assert (frame.seq, frame.title, frame.data["n"]) == (n + 1, f"push {n}", n)
            assert frame.data["blob"] == chr(65 + n % 26) * BLOB
            await ws.send(JSON.encode(Ack(id=frame.id, seq=frame.seq)))
        await ws.close()
    assert "Traceback" not in server.output()
