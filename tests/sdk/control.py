"""A small HTTP control server for SDK tests written in other languages.

The Node tests of the JavaScript SDK (sdk/js/test/) cannot reach the test
database; they ask this server, run by the pytest test in a thread, to push
to devices (one message, or a burst of many committed at once), read
delivery statuses and app events and revoke devices, all through the real services.
"""

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.db import connections

from devices.delivery import messages, recall, revocation, targeting
from devices.delivery.pushes import push_batch, push_to_devices
from devices.models import Delivery, Device, DeviceKey, Message, MessageEvent
from kpns_sdk.e2ee import encrypt_for_device


def _push(body: dict[str, Any]) -> dict[str, Any]:
    devices = list(Device.objects.filter(pk__in=body["device_ids"]))
    content = {
        key: body[key]
        for key in ("title", "body", "url", "image", "data", "ttl_seconds")
        if key in body
    }
    message, targets = push_to_devices(
        app=devices[0].app, device_ids=[d.pk for d in devices], **content
    )
    return {"message_id": str(message.pk), "targets": targets}


def burst(device: Device, count: int, title: str = "burst") -> list[str]:
    """`count` messages to one device in one transaction, woken at once: the
    device's socket receives them back to back. Returns the message ids."""
    built = [
        messages.message_build(app=device.app, title=f"{title} {n}", ttl_seconds=600)
        for n in range(1, count + 1)
    ]
    targets = push_batch(app=device.app, plans=[(m, [device.pk]) for m in built])
    assert targets == [1] * count, targets
    return [str(m.pk) for m in built]


def delivery_statuses(device_id: Any) -> dict[str, int]:
    """How many of a device's deliveries are in each status."""
    rows = Delivery.objects.filter(device_id=device_id).values_list("status")
    return dict(sorted(Counter(status for (status,) in rows).items()))


def _burst(body: dict[str, Any]) -> dict[str, Any]:
    device = Device.objects.select_related("app").get(pk=body["device_id"])
    return {"message_ids": burst(device, int(body["count"]))}


def _deliveries(query: dict[str, list[str]]) -> dict[str, Any]:
    if "device" in query:
        return delivery_statuses(query["device"][0])
    rows = Delivery.objects.filter(message_id=query["message"][0])
    return {str(d.device_id): {"status": d.status, "seq": d.seq} for d in rows}


def _events(query: dict[str, list[str]]) -> dict[str, Any]:
    """The app events recorded about a message: {device id: [names]}."""
    rows = MessageEvent.objects.filter(message_id=query["message"][0])
    found: dict[str, Any] = {}
    for device_id, name in rows.order_by("name").values_list("device_id", "name"):
        found.setdefault(str(device_id), []).append(name)
    return found


def _encrypted_push(body: dict[str, Any]) -> dict[str, Any]:
    """What an integrator's backend does: encrypt `payload` to the device's
    current key (the directory's row) and send it through the push service."""
    key = DeviceKey.objects.select_related("device__app").get(
        device_id=body["device_id"]
    )
    encrypted = encrypt_for_device(key.public_key, body["payload"], kid=key.kid)
    result = targeting.push_send(
        app=key.device.app, device_ids=[key.device_id], encrypted=encrypted
    )
    assert result.message is not None
    return {"message_id": str(result.message.pk), "encrypted": encrypted}


def _recall(body: dict[str, Any]) -> dict[str, Any]:
    """A recall ({"message_id"}) or, with "changes", an update."""
    message = Message.objects.get(pk=body["message_id"])
    if "changes" in body:
        result = recall.message_update(message=message, changes=body["changes"])
    else:
        result = recall.message_recall(message=message)
    return {"control_id": str(result.control_id), "targets": result.targets}


def _revoke(body: dict[str, Any]) -> dict[str, Any]:
    revocation.device_revoke(device=Device.objects.get(pk=body["device_id"]))
    return {"revoked": body["device_id"]}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        if parts.path == "/deliveries":
            self._answer(lambda: _deliveries(parse_qs(parts.query)))
        elif parts.path == "/events":
            self._answer(lambda: _events(parse_qs(parts.query)))
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        action = {
            "/push": _push,
            "/burst": _burst,
            "/revoke": _revoke,
            "/recall": _recall,
            "/encrypted-push": _encrypted_push,
        }.get(self.path)
        if action is None:
            self._reply(404, {"error": "not found"})
        else:
            self._answer(lambda: action(body))

    def _answer(self, work: Any) -> None:
        try:
            self._reply(200, work())
        except Exception as exc:  # reported to the Node test, which fails
            self._reply(500, {"error": repr(exc)})
        finally:
            connections.close_all()  # one thread per request: do not leak

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def control_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
