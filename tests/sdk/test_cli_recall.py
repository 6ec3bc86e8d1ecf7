"""`kpns listen`, run as its own process against a real Daphne, prints the
update and the recall of a push it received (issue 20), in plain words or
as JSON lines, in seq order, and acknowledges both."""

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from channels.db import database_sync_to_async

from devices.delivery import counters
from devices.models import Device
from tests.e2e.servers import ROOT
from tests.factories import make_api_key, make_app
from tests.sdk.test_python_sdk import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FRAME_LINE = re.compile(r"^(\{|\d\d:\d\d:\d\d (push|update|recall) #)")


class Listener:
    """`python -m kpns_sdk listen …` with its stdout read line by line."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kpns_sdk", "listen", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_frame(self, timeout: float = 20.0) -> str:
        """The next line about a frame: a JSON line, or a push, update or
        recall in words (not the connection state, nor a push's details)."""
        while True:
            line = self.lines.get(timeout=timeout)
            if FRAME_LINE.match(line):
                return line

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()


def world():
    app = make_app(name="Shop")
    return app, make_api_key(app, scopes=["push:send"])[1]


@pytest.mark.parametrize("mode", ["json", "words"])
async def test_kpns_listen_prints_an_update_and_a_recall(sdk_server, tmp_path, mode):
    app, key = await database_sync_to_async(world)()
    args = ["--server", sdk_server.http_url, "--client-key", app.client_key]
    args += ["--state", str(tmp_path / "device.json"), "--alias", "cli-user"]
    if mode == "json":
        args += ["--json", "--encoding", "kmpp"]
    listener = Listener(args)
    try:
        online = Device.objects.filter(app=app, node__isnull=False).exists
        await wait_for(database_sync_to_async(online), 30, "kpns listen online")
        async with httpx.AsyncClient(
            base_url=sdk_server.http_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as api:
            sent = await api.post(
                "/api/v1/pushes",
                json={"audience": {"aliases": ["cli-user"]}, "title": "Sale 50%"},
            )
            assert sent.status_code == 202, sent.text
            message_id = sent.json()["message_id"]
            push = listener.next_frame()
            delivered = database_sync_to_async(counters.message_counts)

            async def acked(of) -> bool:
                return (await delivered(of))["delivered"] == 1

            await wait_for(lambda: acked(message_id), 20, "the push's ack")
            update = await api.post(
                f"/api/v1/messages/{message_id}/update",
                json={"title": "Sale 15%", "body": "Sorry"},
            )
            assert update.status_code == 200, update.text
            update_line = listener.next_frame()
            recall = await api.post(f"/api/v1/messages/{message_id}/recall")
            assert recall.status_code == 200, recall.text
            recall_line = listener.next_frame()
            for control in (update.json(), recall.json()):
                assert control["targets"] == 1
                await wait_for(lambda c=control: acked(c["control_id"]), 20, "ack")
    finally:
        code, err = listener.stop()
    assert code == 0, err
    if mode == "json":
        assert json.loads(push)["id"] == message_id
        assert json.loads(push)["title"] == "Sale 50%"
        assert json.loads(update_line) == {
            "type": "update",
            "id": message_id,
            "seq": 2,
            "title": "Sale 15%",
            "body": "Sorry",
            "url": "",
            "image": "",
            "data": {},
        }
        assert json.loads(recall_line) == {
            "type": "recall",
            "id": message_id,
            "seq": 3,
        }
        assert "connected" in err  # the state goes to stderr with --json
    else:
        assert push.endswith("push #1 'Sale 50%'"), push
        assert update_line.endswith(f"update #2 of {message_id}: now 'Sale 15%'"), (
            update_line
        )
        assert recall_line.endswith(f"recall #3 of {message_id}: remove it")
        assert time.strptime(recall_line.split()[0], "%H:%M:%S")
