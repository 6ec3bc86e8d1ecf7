"""An end-to-end encrypted push to the JavaScript SDK in Chromium (WebCrypto,
a non-extractable key in IndexedDB), sent by a backend through the real push
API; then the database (pg_dump) and the server's DEBUG log are searched for
the plaintext, and the admin shows only metadata. Screenshot under
var/screenshots/."""

import uuid

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection

from kpns_sdk.e2ee import encrypt_for_device
from tests.e2e.servers import ROOT, daphne_servers
from tests.factories import make_api_key, make_app
from tests.sdk.test_e2ee_python import database_dump

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
]

SCREENSHOTS = ROOT / "var" / "screenshots"

START_DEVICE = """async ([server, clientKey, encoding]) => {
  const { KpnsClient } = await import("/static/kpns/kpns.js");
  const client = new KpnsClient({ server, clientKey, encoding });
  window.received = [];
  client.on("push", (p) => window.received.push(p));
  const kid = await client.enableEncryption();
  client.start();
  await new Promise((resolve) => {
    const check = () =>
      client.state === "connected" ? resolve() : setTimeout(check, 50);
    check();
  });
  window.kpns = client;
  return { deviceId: client.deviceId, kid };
}"""

# What IndexedDB holds: a CryptoKey whose bytes page script cannot read.
STORED_KEY = """async (clientKey) => {
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open("kpns-keys");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const keys = await new Promise((resolve) => {
    const store = db.transaction("keys").objectStore("keys");
    const request = store.get(`kpns:${clientKey}:e2ee`);
    request.onsuccess = () => resolve(request.result);
  });
  const key = keys[0].privateKey;
  const exported = await crypto.subtle.exportKey("pkcs8", key)
    .then(() => true, () => false);
  const inStorage = JSON.stringify(Object.assign({}, localStorage));
  return { count: keys.length, kid: keys[0].kid, isCryptoKey: key instanceof CryptoKey,
           extractable: key.extractable, exported, inStorage };
}"""


def setup_world():
    app = make_app(name="E2EE app")
    _key, api_key = make_api_key(app)
    User.objects.create_superuser("root", password="pw-root-123")
    return app, api_key


def backend_send(server, api_key, device_id, payload):
    auth = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(timeout=10) as http:
        directory = http.get(
            f"{server}/api/v1/device-keys",
            params={"device_id": device_id},
            headers=auth,
        )
        (entry,) = directory.json()["results"]
        encrypted = encrypt_for_device(entry["public_key"], payload, kid=entry["kid"])
        sent = http.post(
            f"{server}/api/v1/pushes",
            json={"device_ids": [device_id], "encrypted": encrypted},
            headers=auth,
        )
    assert sent.status_code == 202, sent.text
    return sent.json()["message_id"], encrypted


@pytest.mark.timeout(300)
@pytest.mark.parametrize("encoding", ["json", "kmpp"])
def test_chromium_decrypts_an_encrypted_push_kpns_never_reads(
    browser, orm, redis_url, tmp_path, encoding
):
    if connection.vendor != "postgresql":
        pytest.skip("searches the PostgreSQL database with pg_dump")
    app, api_key = orm(setup_world)
    secret = f"OTP-{uuid.uuid4().hex}"
    payload = {
        "title": f"Code {secret}",
        "body": f"Body {secret}",
        "data": {"s": secret},
    }
    env = {"LOG_LEVEL": "DEBUG"}
    with daphne_servers(1, redis_url=redis_url, tmp_path=tmp_path, extra_env=env) as (
        server,
    ):
        base = server.http_url
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/healthz")
        device = page.evaluate(START_DEVICE, [base, app.client_key, encoding])

        message_id, encrypted = backend_send(base, api_key, device["deviceId"], payload)
        page.wait_for_function("window.received.length === 1", timeout=15_000)
        push = page.evaluate("window.received[0]")
        assert push["id"] == message_id
        assert (push["title"], push["body"], push["data"]) == (
            payload["title"],
            payload["body"],
            payload["data"],
        )
        assert push["enc"] == encrypted and push["enc"]["kid"] == device["kid"]

        stored = page.evaluate(STORED_KEY, app.client_key)
        assert stored["count"] == 1 and stored["kid"] == device["kid"]
        assert stored["isCryptoKey"] and stored["extractable"] is False
        assert stored["exported"] is False
        assert device["kid"] not in stored["inStorage"]  # not in localStorage
        page.evaluate("window.kpns.stop()")

        # The admin: metadata only.
        admin = context.new_page()
        admin.goto(f"{base}/admin/login/")
        admin.fill("#id_username", "root")
        admin.fill("#id_password", "pw-root-123")
        admin.click("input[type=submit]")
        admin.goto(f"{base}/admin/devices/message/{message_id}/change/")
        text = admin.inner_text("#content")
        size = len(encrypted["ct"]) * 3 // 4
        assert f"end-to-end encrypted, {size:,} bytes" in text
        assert encrypted["ct"] not in admin.content()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        admin.screenshot(
            path=str(SCREENSHOTS / f"e2ee-admin-message-{encoding}.png"),
            full_page=True,
        )
        logs = server.output()

    dump = orm(database_dump)
    assert encrypted["ct"] in dump
    assert secret not in dump
    assert "push committed" in logs
    assert secret not in logs
