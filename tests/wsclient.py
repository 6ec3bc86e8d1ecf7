"""A minimal real WebSocket device client for end-to-end tests."""

import asyncio
from typing import Any

import websockets

from devices.delivery.protocol import JSON, Ack, Codec, Hello, Push, Welcome


class DeviceClient:
    def __init__(
        self, url: str, token: str, codec: Codec = JSON, ssl: Any = None
    ) -> None:
        self.url = url
        self.token = token
        self.codec = codec
        self.ssl = ssl  # an ssl.SSLContext for wss:// (tests/ops, nginx)
        self.ws: Any = None
        self.welcome: Welcome | None = None

    async def connect(self, last_seq: int = 0) -> Welcome:
        self.ws = await websockets.connect(
            self.url,
            subprotocols=[self.codec.name, f"kpns.token.{self.token}"],
            open_timeout=10,
            **({"ssl": self.ssl} if self.ssl is not None else {}),
        )
        await self.send(Hello(last_seq=last_seq))
        frame = await self.receive()
        assert isinstance(frame, Welcome), frame
        self.welcome = frame
        return frame

    async def send(self, frame: Any) -> None:
        await self.ws.send(self.codec.encode(frame))

    async def receive(self, timeout: float = 10.0) -> Any:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        return self.codec.decode_server(data)

    async def receive_push(self, timeout: float = 10.0) -> Push:
        while True:
            frame = await self.receive(timeout)
            if isinstance(frame, Push):
                return frame

    async def ack(self, push: Push) -> None:
        await self.send(Ack(id=push.id, seq=push.seq))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
