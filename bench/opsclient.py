"""A load-client process whose devices come back like the SDKs' after a
close: exponential backoff with full jitter (attempt n waits up to
min(30 s, 1 s x 2^n), docs/clients.md), `hello {last_seq}` so the server
replays what they missed, to the next server in the list when one refuses.
Used by bench/ops_scenarios.py (drains and rolls); bench/loadclient.py's
devices connect once.

Same stdin protocol as bench.loadclient, plus
  closes -> {"codes": {code: n}, "first_close_at", "last_close_at" (of
             1012 closes), "reconnects", "last_welcome_at", "open", "gave_up"}
Every wait is bounded; the process exits by itself when stdin closes.
"""

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from typing import Any

import picows
import uvloop

from bench import loadclient

BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
# "Server busy" (4503, 1013): the backoff starts at 8 s instead.
BUSY_BASE = 8.0
BUSY_CODES = (4503, 1013)
# An SDK gives up on a handshake after this long and backs off.
HANDSHAKE_TIMEOUT = 10.0
# Attempts per outage before a device is counted as given up (about 5 min).
MAX_ATTEMPTS = 14
CLOSE_SERVICE_RESTART = 1012


class Device(loadclient.Device):
    """One connection of a device; the device's state lives in its Slot."""

    def __init__(self, client: "OpsClient", slot: "Slot") -> None:
        super().__init__(client, slot.index)
        self.slot = slot
        self.last_seq = slot.last_seq

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        hello = f'{{"type":"hello","last_seq":{self.slot.last_seq}}}'
        transport.send(picows.WSMsgType.TEXT, hello.encode())

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            code: Any = frame.get_close_code()
            # An enum for the standard codes; KPNS's 44xx may come as ints.
            self.slot.last_code = int(getattr(code, "value", code))
            self.slot.client.on_close(self.slot.last_code)
            transport.send_close(code)
            transport.disconnect()
            return
        super().on_ws_frame(transport, frame)
        self.slot.last_seq = self.last_seq

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        super().on_ws_disconnected(transport)
        self.slot.lost(self)


class Slot:
    """A device across its connections."""

    def __init__(self, client: "OpsClient", index: int, token: str) -> None:
        self.client = client
        self.index = index
        self.token = token
        self.last_seq = 0
        self.url = index % len(client.urls) if client.spread else 0
        self.current: Device | None = None
        self.last_code = 0

    def lost(self, device: Device) -> None:
        if device is not self.current or self.client.closing:
            return
        self.current = None
        self.client.open -= 1
        # Elsewhere first, as nginx's least_conn would send a device shed by
        # a drain or a rebalance (the process that closed it holds the most).
        self.url = (self.url + 1) % len(self.client.urls)
        asyncio.ensure_future(self.reconnect())

    async def connect_once(self) -> bool:
        protocols = f"kpns.json.v1, kpns.token.{self.token}"
        url = self.client.urls[self.url]
        transport = None
        try:
            transport, device = await asyncio.wait_for(
                picows.ws_connect(
                    lambda: Device(self.client, self),
                    url,
                    extra_headers={"Sec-WebSocket-Protocol": protocols},
                    local_addr=(self.client.source, 0),
                    enable_auto_pong=True,
                ),
                HANDSHAKE_TIMEOUT,
            )
            if not isinstance(device, Device):
                raise OSError("no listener")
            if await asyncio.wait_for(device.welcomed, HANDSHAKE_TIMEOUT):
                self.current = device
                self.client.open += 1
                return True
        except (TimeoutError, OSError, picows.WSError):
            pass
        if transport is not None:
            # Not welcomed in time: an SDK drops that socket. Left open, its
            # late hello replaced the device's next connection (4409).
            transport.disconnect()
        # The next server, as nginx moves a refused connect on.
        self.url = (self.url + 1) % len(self.client.urls)
        return False

    async def reconnect(self) -> None:
        for attempt in range(MAX_ATTEMPTS):
            base = BUSY_BASE if self.last_code in BUSY_CODES else BACKOFF_BASE
            delay = random.uniform(0, min(BACKOFF_CAP, base * 2**attempt))
            await asyncio.sleep(delay)
            if self.client.closing:
                return
            if await self.connect_once():
                self.client.reconnects += 1
                self.client.last_welcome_at = time.time()
                return
        self.client.gave_up += 1


class OpsClient(loadclient.LoadClient):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.spread = args.spread
        self.slots = [Slot(self, i, token) for i, token in enumerate(self.tokens)]
        self.closing = False
        self.open = 0
        self.reconnects = 0
        self.gave_up = 0
        self.codes: Counter[int] = Counter()
        self.first_close_at = 0.0
        self.last_close_at = 0.0
        self.last_welcome_at = 0.0

    def on_close(self, code: int) -> None:
        self.codes[code] += 1
        if code == CLOSE_SERVICE_RESTART:
            now = time.time()
            self.first_close_at = self.first_close_at or now
            self.last_close_at = now

    async def connect_all(self) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(loadclient.CONNECT_CONCURRENCY)

        async def first(slot: Slot) -> int:
            async with gate:
                for _attempt in range(loadclient.CONNECT_ATTEMPTS):
                    if await slot.connect_once():
                        return 1
                    await asyncio.sleep(0.2)
            return 0

        results = await asyncio.gather(*(first(slot) for slot in self.slots))
        return {
            "connected": sum(results),
            "failed": len(results) - sum(results),
            "seconds": round(time.monotonic() - started, 3),
        }

    def closes(self) -> dict[str, Any]:
        return {
            "codes": {str(code): n for code, n in self.codes.items()},
            "first_close_at": self.first_close_at,
            "last_close_at": self.last_close_at,
            "reconnects": self.reconnects,
            "last_welcome_at": self.last_welcome_at,
            "open": self.open,
            "gave_up": self.gave_up,
        }

    def reset_closes(self) -> None:
        self.codes.clear()
        self.first_close_at = self.last_close_at = self.last_welcome_at = 0.0
        self.reconnects = self.gave_up = 0

    async def ping_all(self) -> None:
        for slot in self.slots:
            if slot.current is not None and slot.current.transport is not None:
                slot.current.transport.send(picows.WSMsgType.TEXT, b'{"type":"ping"}')

    def close(self) -> None:
        self.closing = True
        for slot in self.slots:
            device = slot.current
            if device is not None and device.transport is not None:
                device.transport.send_close()
                device.transport.disconnect()


async def main(args: argparse.Namespace) -> None:
    client = OpsClient(args)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    heartbeat = asyncio.ensure_future(loadclient._heartbeats(client))
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "close":
            client.close()
            loadclient._answer({"closed": True})
            break
        if line == "connect":
            loadclient._answer(await client.connect_all())
        elif line == "report":
            loadclient._answer(client.report())
        elif line == "closes":
            loadclient._answer(client.closes())
        elif line == "reset":
            client.reset_closes()
            loadclient._answer({"reset": True})
    heartbeat.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", required=True, help="JSON list of tokens")
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--source", default="127.0.0.1")
    parser.add_argument("--no-ack", action="store_true")
    parser.add_argument(
        "--spread",
        action="store_true",
        help="device i connects to url i mod n first (default: the first url)",
    )
    uvloop.run(main(parser.parse_args()))
