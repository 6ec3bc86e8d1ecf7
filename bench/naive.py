"""The naive design, for comparison only: every consumer in one layer group.

Served at /ws/bench/naive/ by bench.asgi (the bench starts its servers with it). A
broadcast is one `group_send`, which channels-redis turns into one Redis
message per member channel; each consumer then builds and writes its frame.
This is what KPNS's node fan-out replaces (docs/benchmarks.md).
"""

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from devices.delivery.protocol import token_from_subprotocols
from devices.registry import services as registry

GROUP = "bench.naive"

# Its own layer instance (same Redis, same group keys), hence its own
# connection pool: 1,000 consumers per process leaving at once exhaust it
# ("Too many connections"), and on the default alias the KPNS node of the
# same process, which the next scenarios measure, shares that pool.
LAYER = "naive"
settings.CHANNEL_LAYERS.setdefault(LAYER, settings.CHANNEL_LAYERS["default"])


class NaiveConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = LAYER

    async def connect(self) -> None:
        token = token_from_subprotocols(self.scope.get("subprotocols", []))
        device = await database_sync_to_async(registry.device_authenticate)(
            token=token or ""
        )
        if device is None:
            await self.close()
            return
        self.device_id = str(device.pk)
        self.seq = 0
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept("kpns.json.v1")

    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        if text_data and '"hello"' in text_data:
            await self.send(
                json.dumps({"type": "welcome", "device_id": self.device_id})
            )

    async def naive_push(self, event: dict[str, Any]) -> None:
        self.seq += 1
        await self.send(json.dumps({**event["push"], "type": "push", "seq": self.seq}))

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)
