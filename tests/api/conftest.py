"""Fixtures for the server API: keyed clients and a real local webhook receiver."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client

from tests.factories import make_api_key, make_app


class ApiClient:
    """Django's test client with ``Authorization: Bearer <key>`` on every call."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.client = Client()

    def _call(self, method: str, path: str, body: Any = None, **headers: Any) -> Any:
        extra = {"HTTP_AUTHORIZATION": f"Bearer {self.key}"}
        for name, value in headers.items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        if body is not None:
            extra["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
            extra["content_type"] = "application/json"
        return getattr(self.client, method)(path, **extra)

    def get(self, path: str, **headers: Any) -> Any:
        return self._call("get", path, **headers)

    def post(self, path: str, body: Any = None, **headers: Any) -> Any:
        return self._call("post", path, {} if body is None else body, **headers)

    def patch(self, path: str, body: Any, **headers: Any) -> Any:
        return self._call("patch", path, body, **headers)

    def delete(self, path: str, **headers: Any) -> Any:
        return self._call("delete", path, **headers)


@pytest.fixture
def api_key(app):
    return make_api_key(app)


@pytest.fixture
def api(api_key):
    return ApiClient(api_key[1])


@pytest.fixture
def other_app(db):
    return make_app(name="Other app")


@pytest.fixture
def other_api(other_app):
    return ApiClient(make_api_key(other_app)[1])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 recording every call.

    ``statuses`` are answered in order (then 200); ``delay`` sleeps first.
    """

    url: str = ""
    calls: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    event: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            state.calls.append(Received(self.path, dict(self.headers), body))
            if state.delay:
                state.event.wait(state.delay)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/kpns"
    yield state
    state.event.set()
    server.shutdown()
    server.server_close()
