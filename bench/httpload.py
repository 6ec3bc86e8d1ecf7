"""An HTTP load process: POSTs JSON requests at a fixed offered rate.

Started by the targeted scenario: `python -m bench.httpload plan.json` with
{"servers": ["127.0.0.1:8001", ...], "key": API key, "rate": requests per
second (0: as fast as the connections allow), "connections": keep-alive
connections, "requests": [{"path": ..., "body": {...}}, ...]}. Writes one
JSON document to stdout: per request its scheduled time, answer time,
status and answer body.

Open loop: request i is due at start + i / rate whatever happened to the
ones before, and its latency counts from that moment, so a stalled server
shows up as latency rather than as a lower offered rate (no coordinated
omission). Plain HTTP/1.1 keep-alive over asyncio streams on uvloop: a
generic client library spent more CPU than the server under test.
"""

import asyncio
import json
import sys
import time
from typing import Any

import uvloop

REQUEST_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0


class Connection:
    def __init__(self, server: str, key: str) -> None:
        self.host, port = server.rsplit(":", 1)
        self.port = int(port)
        self.key = key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(
        self, path: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, bytes, str]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
            )
        assert self.reader is not None and self.writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.key}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close, chunked, answer_type = 0, False, False, ""
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "content-type":
                answer_type = value.strip()
        if chunked:
            payload = await self._chunks()
        else:
            payload = await self.reader.readexactly(length) if length else b""
        if close:
            self.writer.close()
        return status, payload, answer_type

    async def _chunks(self) -> bytes:
        """A chunked body (a streamed answer, e.g. NDJSON results)."""
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()  # the empty trailer
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    requests = plan["requests"]
    rate = float(plan.get("rate", 0))
    servers = plan["servers"]
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for index in range(int(plan.get("connections", 32))):
        pool.put_nowait(Connection(servers[index % len(servers)], plan["key"]))
    results: list[dict[str, Any]] = [{} for _ in requests]
    started = time.time()

    async def one(index: int, scheduled: float | None) -> None:
        request = requests[index]
        # "raw": a body sent as it is (an NDJSON stream), with its "type".
        raw = request.get("raw")
        body = raw.encode() if raw is not None else json.dumps(request["body"]).encode()
        content_type = request.get("type", "application/json")
        connection = await pool.get()
        if scheduled is None:
            # Closed loop: a request's latency counts from when it can start.
            scheduled = time.time()
        try:
            status, payload, answer_type = await asyncio.wait_for(
                connection.post(request["path"], body, content_type), REQUEST_TIMEOUT
            )
            answer = _parse(payload, answer_type)
        except (OSError, TimeoutError, ValueError, ConnectionError) as exc:
            status, answer = 0, {"error": repr(exc)}
            if connection.writer is not None:
                connection.writer.close()
            connection.writer = None
        finally:
            pool.put_nowait(connection)
        results[index] = {
            "scheduled": scheduled,
            "done": time.time(),
            "status": status,
            "answer": answer,
        }

    tasks = []
    for index in range(len(requests)):
        scheduled = started + (index / rate if rate else 0.0)
        delay = scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(index, scheduled if rate else None)))
    await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT * 2 + len(requests) / 100)
    finished = time.time()
    return {"started": started, "finished": finished, "results": results}


def _parse(payload: bytes, content_type: str) -> Any:
    if not payload:
        return None
    if content_type.startswith("application/x-ndjson"):
        return {"lines": [json.loads(line) for line in payload.splitlines() if line]}
    return json.loads(payload)


def main() -> None:
    with open(sys.argv[1]) as handle:
        plan = json.load(handle)
    report = uvloop.run(run(plan))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
