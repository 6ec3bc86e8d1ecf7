"""What an app does with its inbox, for end-to-end tests of recall and
update: pushes are shown, recalls remove them, updates rewrite them; each
seq is handled once and in order (docs/guarantees.md, rule 9)."""

import asyncio
import time

import websockets
from channels.db import database_sync_to_async

from devices.delivery.protocol import Ack, Push, Recall, Update
from tests.factories import make_api_key, make_app, make_device
from tests.wsclient import DeviceClient

InboxFrame = Push | Recall | Update


class AppModel:
    """The pushes an app shows (id -> title, body), from the frames it gets."""

    def __init__(self, client: DeviceClient) -> None:
        self.client = client
        self.shown: dict[str, tuple[str, str]] = {}
        self.seqs: list[int] = []

    async def handle(self, frame: InboxFrame) -> None:
        assert not self.seqs or frame.seq > self.seqs[-1], (self.seqs, frame)
        self.seqs.append(frame.seq)
        if isinstance(frame, Push):
            self.shown[frame.id] = (frame.title, frame.body)
        elif isinstance(frame, Recall):
            self.shown.pop(frame.id, None)
        elif frame.id in self.shown:  # an update of a push the app never had
            self.shown[frame.id] = (frame.title, frame.body)  # is not shown
        await self.client.send(Ack(id=frame.id, seq=frame.seq))

    async def take(self, count: int) -> list[InboxFrame]:
        frames: list[InboxFrame] = []
        while len(frames) < count:
            frame = await self.client.receive(timeout=20)
            if isinstance(frame, Push | Recall | Update):
                await self.handle(frame)
                frames.append(frame)
        return frames

    async def nothing_more(self) -> bool:
        try:
            frame = await self.client.receive(timeout=0.5)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected {frame}")


async def connect_all(apps: list[AppModel], chunk: int = 50) -> None:
    # In chunks, retrying a 4503 (too many handshakes in flight) as the
    # SDKs do: a 1,000-socket burst is a reconnect storm to the server.
    async def connect(app: AppModel) -> None:
        for attempt in range(20):
            try:
                await app.client.connect()
                return
            except websockets.ConnectionClosedError:
                await asyncio.sleep(0.1 * (attempt + 1))
        raise AssertionError("could not connect")

    for start in range(0, len(apps), chunk):
        await asyncio.gather(*(connect(app) for app in apps[start : start + chunk]))


async def wait_for(query, wanted: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await database_sync_to_async(query)() >= wanted:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never reached {wanted}")


def setup_world(online: int, had: int, never: int):
    """An app with that many devices, and a server API key for it."""
    app = make_app(name="Shop")
    made = [make_device(app) for _ in range(online + had + never)]
    _key, key = make_api_key(app, scopes=["push:send", "stats:read"])
    return made, key
