"""A load-client process: holds many device sockets with picows on uvloop.

Started by bench.run. Reads commands on stdin, one per line, and answers one
JSON line on stdout per command:
  connect   -> {"connected": n, "failed": n, "seconds": s}
  report    -> receipts since the last report (see Receipts.as_dict)
  rtt       -> {"rtts": [...]}: ping/pong round trips of up to 100 sockets
  close     -> closes every socket, then exits
Every wait is bounded; the process exits by itself when stdin closes.
"""

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import picows
import uvloop

CONNECT_CONCURRENCY = 200
CONNECT_TIMEOUT = 30.0
# An overloaded server times handshakes out; each device retries, bounded.
CONNECT_ATTEMPTS = 6
# Each device pings this often, well inside the server's 75 s idle timeout.
HEARTBEAT_SECONDS = 20
PING_TICK_SECONDS = 0.05


class Receipts:
    def __init__(self) -> None:
        self.first_recv: dict[str, float] = {}  # message id -> first receipt time
        self.times: dict[str, list[float]] = {}  # message id -> receipt times
        self.duplicates = 0  # same (device, seq) twice: app-visible duplicates
        self.out_of_order = 0
        self.wire_duplicates = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "times": self.times,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "wire_duplicates": self.wire_duplicates,
        }


class Device(picows.WSListener):
    def __init__(self, client: "LoadClient", index: int) -> None:
        self.client = client
        self.index = index
        self.last_seq = 0
        self.transport: picows.WSTransport | None = None
        self.welcomed = asyncio.get_running_loop().create_future()
        self.pong: asyncio.Future[float] | None = None

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        transport.send(picows.WSMsgType.TEXT, b'{"type":"hello","last_seq":0}')

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type != picows.WSMsgType.TEXT:
            return
        message = json.loads(frame.get_payload_as_bytes())
        kind = message.get("type")
        if kind == "push":
            self.client.on_push(self, message)
        elif kind == "welcome" and not self.welcomed.done():
            self.welcomed.set_result(True)
        elif kind == "pong" and self.pong is not None and not self.pong.done():
            self.pong.set_result(time.perf_counter())

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.client.disconnected += 1
        if not self.welcomed.done():
            self.welcomed.set_result(False)


class LoadClient:
    def __init__(self, args: argparse.Namespace) -> None:
        with open(args.devices) as handle:
            self.tokens: list[str] = json.load(handle)
        self.urls: list[str] = args.url
        self.source = args.source
        self.ack = not args.no_ack
        self.devices: list[Device] = []
        self.receipts = Receipts()
        self.disconnected = 0

    def on_push(self, device: Device, message: dict[str, Any]) -> None:
        now = time.time()
        seq = message["seq"]
        if seq <= device.last_seq:
            self.receipts.wire_duplicates += 1
            if seq == device.last_seq:
                return
            self.receipts.out_of_order += 1
            return
        device.last_seq = seq
        self.receipts.times.setdefault(message["id"], []).append(now)
        if self.ack and device.transport is not None:
            ack = f'{{"type":"ack","id":"{message["id"]}","seq":{seq}}}'
            device.transport.send(picows.WSMsgType.TEXT, ack.encode())

    async def connect_all(self) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        results = await asyncio.gather(
            *(self._connect(i, token, gate) for i, token in enumerate(self.tokens))
        )
        return {
            "connected": sum(results),
            "failed": len(results) - sum(results),
            "seconds": round(time.monotonic() - started, 3),
        }

    async def _connect(self, index: int, token: str, gate: asyncio.Semaphore) -> int:
        protocols = f"kpns.json.v1, kpns.token.{token}"
        async with gate:
            for attempt in range(CONNECT_ATTEMPTS):
                # A retry goes to the next server, as through a load balancer:
                # retrying the one that timed out fed its overload.
                url = self.urls[(index + attempt) % len(self.urls)]
                try:
                    transport, device = await asyncio.wait_for(
                        picows.ws_connect(
                            lambda: Device(self, index),
                            url,
                            extra_headers={"Sec-WebSocket-Protocol": protocols},
                            local_addr=(self.source, 0),
                            enable_auto_pong=True,
                        ),
                        CONNECT_TIMEOUT,
                    )
                    if device is None:  # refused during the upgrade
                        raise OSError("no listener")
                    if await asyncio.wait_for(device.welcomed, CONNECT_TIMEOUT):
                        self.devices.append(device)
                        return 1
                except (TimeoutError, OSError, picows.WSError):
                    await asyncio.sleep(0.2 * (attempt + 1))
        return 0

    def report(self) -> dict[str, Any]:
        report = self.receipts.as_dict()
        report["disconnected"] = self.disconnected
        report["sockets"] = len(self.devices)
        self.receipts = Receipts()
        return report

    def ping_share(self, share: int, shares: int) -> None:
        """Ping one share of the devices (every `shares`-th from `share`)."""
        for device in self.devices[share::shares]:
            if device.transport is not None:
                device.transport.send(picows.WSMsgType.TEXT, b'{"type":"ping"}')

    async def ping_all(self) -> None:
        for device in self.devices:
            if device.transport is not None:
                device.transport.send(picows.WSMsgType.TEXT, b'{"type":"ping"}')

    async def rtts(self, sample: int = 100) -> list[float]:
        """Ping/pong round trips (seconds) of a sample of sockets: does the
        server keep answering while it works? Unanswered in 10 s: 10."""
        step = max(1, len(self.devices) // sample)
        chosen = [d for d in self.devices[::step][:sample] if d.transport]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for device in chosen:
            device.pong = loop.create_future()
            assert device.transport is not None
            device.transport.send(picows.WSMsgType.TEXT, b'{"type":"ping"}')
        waits = [d.pong for d in chosen if d.pong is not None]
        if waits:
            await asyncio.wait(waits, timeout=10)
        return [
            (d.pong.result() - started) if d.pong and d.pong.done() else 10.0
            for d in chosen
        ]

    def close(self) -> None:
        for device in self.devices:
            if device.transport is not None:
                device.transport.send_close()
                device.transport.disconnect()


async def main(args: argparse.Namespace) -> None:
    client = LoadClient(args)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    heartbeat = asyncio.ensure_future(_heartbeats(client, args.sync_pings))
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "close":
            client.close()
            _answer({"closed": True})
            break
        if line == "connect":
            _answer(await client.connect_all())
        elif line == "report":
            _answer(client.report())
        elif line == "rtt":
            _answer({"rtts": await client.rtts()})
    heartbeat.cancel()


async def _heartbeats(client: LoadClient, together: bool) -> None:
    """Each device pings every HEARTBEAT_SECONDS, as the SDKs do.

    An SDK pings on its own timer from its own welcome, so a server sees
    its devices' pings spread over the interval: here one share of them
    every PING_TICK_SECONDS (at 10,000 devices, 25 pings every 50 ms).
    `together` (--sync-pings) pings every device at the same moment
    instead, as this client did before: 10,000 pings in one burst every
    20 s stalled every push behind them (docs/benchmarks.md).
    """
    if together:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await client.ping_all()
    shares = round(HEARTBEAT_SECONDS / PING_TICK_SECONDS)
    share = 0
    while True:
        await asyncio.sleep(PING_TICK_SECONDS)
        client.ping_share(share, shares)
        share = (share + 1) % shares


def _answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", required=True, help="JSON list of tokens")
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--source", default="127.0.0.1")
    parser.add_argument("--no-ack", action="store_true")
    parser.add_argument(
        "--sync-pings", action="store_true", help="every device pings at once"
    )
    uvloop.run(main(parser.parse_args()))
