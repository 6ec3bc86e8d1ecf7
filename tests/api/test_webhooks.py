"""Webhooks: endpoints, the outbox written with the event, signed calls to a
real local receiver, retries with backoff, and no cost without subscribers."""

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import lifecycle
from campaigns.sender import send_due
from devices.delivery import pushes, receipts, resume, revocation
from devices.integrations import egress, webhooks
from devices.models import (
    Delivery,
    IdempotencyRecord,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from tests.api.conftest import ApiClient
from tests.factories import make_api_key, make_device

pytestmark = pytest.mark.django_db

LOCAL = ["127.0.0.1/32"]


@pytest.fixture
def receiver(receiver, settings):
    """The local receiver, let in by the allow-list as an on-premise one would
    be: webhooks call only public addresses otherwise."""
    settings.KPNS = {**settings.KPNS, "WEBHOOK_ALLOWED_NETWORKS": LOCAL}
    return receiver


def subscribe(app, url, events):
    return webhooks.webhook_endpoint_create(app=app, url=url, events=events)


def verify(secret: str, body: bytes, header: str, now: float) -> bool:
    """The receiver side, exactly as docs/api.md shows it."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs(now - timestamp) > 300:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


# Endpoints ------------------------------------------------------------------


def test_endpoints_are_created_listed_and_deleted_through_the_api(api, app):
    response = api.post(
        "/api/v1/webhooks",
        {"url": "https://example.com/kpns", "events": ["message.delivered"]},
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["secret"].startswith("whsec_")
    listed = api.get("/api/v1/webhooks").json()
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in api.get(f"/api/v1/webhooks/{created['id']}").json()
    assert api.delete(f"/api/v1/webhooks/{created['id']}").status_code == 204
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "events": ["message.opened"]}, "url"),
        ({"url": "javascript:alert(1)", "events": ["message.opened"]}, "url"),
        ({"url": "file:///etc/passwd", "events": ["message.opened"]}, "url"),
        ({"url": "https://example.com", "events": ["message.exploded"]}, "events"),
        ({"url": "https://example.com", "events": []}, "events"),
    ],
)
def test_only_http_urls_and_known_events(api, body, field):
    response = api.post("/api/v1/webhooks", body)
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_endpoints_are_per_app_and_scoped(api, app, other_app):
    theirs = subscribe(other_app, "https://example.com/b", ["message.opened"])
    assert api.get(f"/api/v1/webhooks/{theirs.pk}").status_code == 404
    assert api.delete(f"/api/v1/webhooks/{theirs.pk}").status_code == 404
    assert api.get("/api/v1/webhooks").json() == []
    reader = ApiClient(make_api_key(app, scopes=["webhooks:read"])[1])
    assert reader.get("/api/v1/webhooks").status_code == 200
    body = {"url": "https://example.com/a", "events": ["message.opened"]}
    assert reader.post("/api/v1/webhooks", body).status_code == 403


def test_admin_creates_an_endpoint_and_shows_the_secret_once(app):
    client = Client()
    client.force_login(User.objects.create_superuser("root", "", "pw"))
    response = client.post(
        "/admin/devices/webhookendpoint/add/",
        {
            "app": app.pk,
            "url": "https://example.com/h",
            "events": ["device.unregistered"],
        },
        follow=True,
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["device.unregistered"]
    assert any(endpoint.secret in str(m) for m in response.context["messages"])
    page = client.get(f"/admin/devices/webhookendpoint/{endpoint.pk}/change/")
    assert endpoint.secret not in page.content.decode()
    bad = client.post(
        "/admin/devices/webhookendpoint/add/",
        {"app": app.pk, "url": "ftp://example.com/h", "events": ["message.opened"]},
    )
    assert bad.status_code == 200 and WebhookEndpoint.objects.count() == 1
    assert client.get("/admin/devices/webhookdelivery/").status_code == 200


# Events into the outbox ------------------------------------------------------


def test_receipts_queue_delivered_and_opened_events_for_subscribers(app, other_app):
    endpoint = subscribe(
        app, "https://example.com/h", ["message.delivered", "message.opened"]
    )
    a, _ = make_device(app, alias="alice")
    b, _ = make_device(app, alias="bob")
    theirs, _ = make_device(other_app)
    message, _ = pushes.push_to_devices(app=app, device_ids=[a.pk, b.pk], title="x")
    pushes.push_to_devices(app=other_app, device_ids=[theirs.pk], title="y")
    mine = {d.device_id: d for d in Delivery.objects.filter(message=message)}
    receipts.receipts_record(receipts.Receipts(delivered=[mine[a.pk].pk]))
    # bob opens without a separate ack: delivered and opened.
    receipts.receipts_record(
        receipts.Receipts(opened=[(b.pk, mine[b.pk].seq, str(message.pk))])
    )
    # Repeats change nothing and queue nothing.
    receipts.receipts_record(receipts.Receipts(delivered=[mine[a.pk].pk]))
    other_delivery = Delivery.objects.get(device=theirs)
    receipts.receipts_record(receipts.Receipts(delivered=[other_delivery.pk]))
    rows = list(WebhookDelivery.objects.order_by("pk"))
    assert [(r.event, r.payload["data"]["alias"]) for r in rows] == [
        ("message.delivered", "alice"),
        ("message.delivered", "bob"),
        ("message.opened", "bob"),
    ]
    assert {r.endpoint_id for r in rows} == {endpoint.pk}
    payload = rows[0].payload
    assert payload["type"] == "message.delivered" and payload["app_id"] == app.pk
    assert payload["data"]["message_id"] == str(message.pk)
    assert payload["id"] == str(rows[0].event_id)


def test_without_subscribers_a_receipt_batch_costs_one_small_query(app):
    devices = [make_device(app)[0] for _ in range(20)]
    message, _ = pushes.push_to_devices(
        app=app, device_ids=[d.pk for d in devices], title="x"
    )
    ids = list(Delivery.objects.filter(message=message).values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as one:
        receipts.receipts_record(receipts.Receipts(delivered=ids[:1]))
    with CaptureQueriesContext(connection) as many:
        receipts.receipts_record(receipts.Receipts(delivered=ids[1:]))
    assert len(one) == len(many)
    hook_queries = [q for q in many if "webhook" in q["sql"]]
    assert len(hook_queries) == 1 and "webhookendpoint" in hook_queries[0]["sql"]
    assert not WebhookDelivery.objects.exists()


def test_unregistering_a_device_queues_device_unregistered(api, app):
    subscribe(app, "https://example.com/h", ["device.unregistered"])
    device, _ = make_device(app, alias="u9")
    api.delete(f"/api/v1/devices/{device.pk}")
    api.delete(f"/api/v1/devices/{device.pk}")  # 404: no second event
    row = WebhookDelivery.objects.get()
    assert row.event == "device.unregistered"
    assert row.payload["data"]["device_id"] == str(device.pk)
    assert row.payload["data"]["alias"] == "u9"


def test_the_outbox_row_is_rolled_back_with_its_event(app):
    subscribe(app, "https://example.com/h", ["device.unregistered"])
    device, _ = make_device(app)
    with pytest.raises(RuntimeError), transaction.atomic():
        revocation.device_revoke(device=device)
        raise RuntimeError("the caller's transaction fails")
    assert not WebhookDelivery.objects.exists()


def test_a_finished_campaign_queues_campaign_finished_with_stats(app):
    subscribe(app, "https://example.com/h", ["campaign.finished"])
    make_device(app)
    campaign = lifecycle.campaign_create(app=app, name="c", title="t")
    lifecycle.campaign_schedule_now(campaign=campaign)
    send_due(now=timezone.now())
    row = WebhookDelivery.objects.get()
    assert row.payload["data"]["campaign_id"] == campaign.pk
    assert row.payload["data"]["status"] == "sent"
    assert row.payload["data"]["stats"]["targeted"] == 1
    # Withdrawing a sent campaign does not finish it twice.
    lifecycle.campaign_cancel(campaign=campaign)
    assert WebhookDelivery.objects.count() == 1


# Calls -----------------------------------------------------------------------


def queue_event(app, url, events=("device.unregistered",)):
    endpoint = subscribe(app, url, list(events))
    device, _ = make_device(app, alias="gone")
    revocation.device_revoke(device=device)
    return endpoint, WebhookDelivery.objects.get(endpoint=endpoint)


def test_calls_are_signed_and_verified_by_a_real_receiver(app, receiver):
    endpoint, row = queue_event(app, receiver.url)
    now = timezone.now()
    assert webhooks.dispatch_due(now=now) == 1
    [call] = receiver.calls
    assert call.path == "/hooks/kpns"
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["KPNS-Event"] == "device.unregistered"
    assert call.headers["KPNS-Event-Id"] == str(row.event_id)
    header = call.headers["KPNS-Signature"]
    assert verify(endpoint.secret, call.body, header, now.timestamp())
    assert webhooks.signature_verify(
        endpoint.secret, call.body, header, now=now.timestamp()
    )
    # A tampered body, another secret or a stale timestamp fail.
    assert not verify(endpoint.secret, call.body + b" ", header, now.timestamp())
    assert not verify("whsec_other", call.body, header, now.timestamp())
    assert not verify(endpoint.secret, call.body, header, now.timestamp() + 600)
    assert json.loads(call.body)["data"]["alias"] == "gone"
    row.refresh_from_db()
    assert row.status == WebhookDeliveryStatus.SUCCEEDED
    assert (row.attempts, row.last_status_code) == (1, 200)
    # Nothing is sent twice.
    assert webhooks.dispatch_due(now=now + timedelta(hours=1)) == 0
    assert len(receiver.calls) == 1


def test_failed_calls_are_retried_with_exponential_backoff(app, receiver, settings):
    settings.KPNS = {**settings.KPNS, "WEBHOOK_BACKOFF_SECONDS": 10}
    receiver.statuses = [500, 503]
    _, row = queue_event(app, receiver.url)
    t0 = timezone.now()
    assert webhooks.dispatch_due(now=t0) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert row.last_error == "HTTP 500"
    assert row.next_attempt_at == t0 + timedelta(seconds=10)
    assert webhooks.dispatch_due(now=t0 + timedelta(seconds=9)) == 0
    assert webhooks.dispatch_due(now=t0 + timedelta(seconds=10)) == 1
    row.refresh_from_db()
    assert (row.attempts, row.last_status_code) == (2, 503)
    # The second failure waits twice as long.
    assert row.next_attempt_at == t0 + timedelta(seconds=30)
    assert webhooks.dispatch_due(now=t0 + timedelta(seconds=29)) == 0
    assert webhooks.dispatch_due(now=t0 + timedelta(seconds=30)) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("succeeded", 3, "")
    assert len(receiver.calls) == 3
    attempts = [c.headers["KPNS-Attempt"] for c in receiver.calls]
    assert attempts == ["1", "2", "3"]
    assert len({c.headers["KPNS-Event-Id"] for c in receiver.calls}) == 1


def test_retries_stop_after_the_last_attempt(app, receiver, settings):
    settings.KPNS = {
        **settings.KPNS,
        "WEBHOOK_BACKOFF_SECONDS": 1,
        "WEBHOOK_MAX_ATTEMPTS": 3,
    }
    receiver.statuses = [500] * 10
    _, row = queue_event(app, receiver.url)
    now = timezone.now()
    for _ in range(5):
        webhooks.dispatch_due(now=now)
        now += timedelta(hours=1)
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 3)
    assert len(receiver.calls) == 3


def test_retries_stop_when_the_event_is_too_old(app, receiver, settings):
    settings.KPNS = {
        **settings.KPNS,
        "WEBHOOK_BACKOFF_SECONDS": 3600,
        "WEBHOOK_MAX_AGE_SECONDS": 5000,
    }
    receiver.statuses = [500] * 10
    _, row = queue_event(app, receiver.url)
    now = timezone.now()
    webhooks.dispatch_due(now=now)  # retry due in 1 h: within 5000 s
    webhooks.dispatch_due(now=now + timedelta(hours=1))  # next in 2 h: too old
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 2)


def test_a_dead_receiver_is_logged_and_retried(app, settings):
    settings.KPNS = {**settings.KPNS, "WEBHOOK_ALLOWED_NETWORKS": LOCAL}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, row = queue_event(app, f"http://127.0.0.1:{port}/nobody")
    webhooks.dispatch_due(now=timezone.now())
    row.refresh_from_db()
    assert row.status == "pending" and row.attempts == 1
    assert row.last_status_code is None and "ConnectError" in row.last_error


def test_a_slow_receiver_times_out_without_holding_up_the_batch(
    app, receiver, settings
):
    settings.KPNS = {**settings.KPNS, "WEBHOOK_TIMEOUT_SECONDS": 0.5}
    receiver.delay = 3
    subscribe(app, receiver.url, ["device.unregistered"])
    for _ in range(8):
        revocation.device_revoke(device=make_device(app)[0])
    started = time.monotonic()
    assert webhooks.dispatch_due(now=timezone.now()) == 8
    # Concurrent calls: about one timeout for the batch, not 8 x 0.5 s.
    assert time.monotonic() - started < 3
    assert set(WebhookDelivery.objects.values_list("last_error", flat=True)) == {
        "ReadTimeout: timed out"
    }


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_tick_never_waits_for_a_call(app, receiver):
    receiver.delay = 2
    queue_event(app, receiver.url)
    dispatcher = webhooks.WebhookDispatcher()
    try:
        started = time.monotonic()
        assert dispatcher.tick(timezone.now()) is True
        assert dispatcher.tick(timezone.now()) is False  # still busy: skipped
        assert time.monotonic() - started < 1.0  # the call itself takes 2 s
        deadline = time.monotonic() + 10
        while not WebhookDelivery.objects.filter(status="succeeded").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        receiver.event.set()
        dispatcher.stop(timeout=10)


def test_old_finished_calls_are_pruned(app, receiver, settings):
    _, row = queue_event(app, receiver.url)
    webhooks.dispatch_due(now=timezone.now())
    later = timezone.now() + timedelta(days=8)
    assert webhooks.deliveries_prune(now=later) == 1
    del row


def test_signature_helper_rejects_malformed_headers():
    for header in ("", "t=abc,v1=00", "v1=00", "t=1"):
        assert not webhooks.signature_verify("s", b"{}", header, now=1.0)


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_process_sends_webhook_calls(app, receiver):
    from campaigns.scheduler import run_scheduler

    queue_event(app, receiver.url)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_scheduler, kwargs={"stop": stop, "poll_seconds": 0.05}
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not receiver.calls:
            assert time.monotonic() < deadline, "no webhook call from the scheduler"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert receiver.calls[0].headers["KPNS-Event"] == "device.unregistered"


def test_scheduler_housekeeping_prunes_keys_and_finished_calls(app, api, receiver):
    from devices.delivery import housekeeping

    api.post("/api/v1/pushes", {"aliases": ["x"], "title": "t"}, idempotency_key="k")
    queue_event(app, receiver.url)
    webhooks.dispatch_due(now=timezone.now())
    housekeeping.prune(now=timezone.now() + timedelta(days=8))
    assert not IdempotencyRecord.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_acks_lost_before_a_reconnect_still_queue_message_delivered(app):
    """A device resuming past a pending delivery confirms it (devices_connect)."""
    subscribe(app, "https://example.com/h", ["message.delivered"])
    device, _ = make_device(app, alias="back")
    message, _ = pushes.push_to_devices(app=app, device_ids=[device.pk], title="x")
    seq = Delivery.objects.get(message=message).seq
    resume.device_connect(
        device_id=device.pk, node="n1", connection_id="c1", last_seq=seq
    )
    row = WebhookDelivery.objects.get()
    assert row.event == "message.delivered"
    assert row.payload["data"]["message_id"] == str(message.pk)


def test_a_disabled_endpoint_gets_no_more_calls(app, receiver):
    endpoint, row = queue_event(app, receiver.url)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    assert webhooks.dispatch_due(now=timezone.now()) == 0
    row.refresh_from_db()
    assert (row.status, row.last_error) == ("failed", "Endpoint disabled.")
    assert receiver.calls == []


# Backoff setting ---------------------------------------------------------------


def test_the_backoff_is_read_from_kpns_webhook_backoff_seconds():
    """The environment variable reaches the retry schedule (settings.py)."""
    code = (
        "import django; django.setup(); from devices.integrations import webhooks; "
        "print(webhooks.backoff_seconds(1), webhooks.backoff_seconds(3))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kpns_site.settings",
        "KPNS_WEBHOOK_BACKOFF_SECONDS": "7.5",
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["7.5", "30.0"]


# The SSRF guard ----------------------------------------------------------------

REFUSED_URLS = [
    ("http://10.0.0.5/h", "10.0.0.5 is a private address"),
    ("http://192.168.1.20:8080/h", "private"),
    ("http://172.16.0.1/h", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://localhost:8000/h", "loopback"),
    ("http://127.0.0.1:9000/h", "loopback"),
    ("http://0.0.0.0/h", "unspecified"),
    ("http://[::1]/h", "loopback"),
    ("http://[::ffff:10.1.2.3]/h", "private"),
    ("http://[::ffff:169.254.169.254]/h", "cloud metadata"),
    ("http://[fe80::1]/h", "link-local"),
    ("http://[fd00:ec2::254]/h", "cloud metadata"),
    ("http://224.0.0.251/h", "multicast"),
    ("http://240.0.0.1/h", "reserved"),
    ("http://100.64.0.1/h", "shared"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
def test_the_api_refuses_internal_addresses_naming_the_reason(api, url, reason):
    response = api.post("/api/v1/webhooks", {"url": url, "events": ["message.opened"]})
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    [message] = response.json()["errors"]["url"]
    assert message.startswith("Refused: ") and reason in message
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "017700000001"]
)
def test_numeric_forms_of_loopback_are_judged_as_the_resolver_reads_them(host):
    assert egress.url_refusal(f"http://{host}/") == f"{host} (127.0.0.1) is a " + (
        "loopback address"
    )


def test_public_addresses_and_allow_listed_networks_pass(api, settings):
    assert egress.url_refusal("https://8.8.8.8/h") is None
    assert egress.url_refusal("http://[2606:4700::1111]/h") is None
    settings.KPNS = {**settings.KPNS, "WEBHOOK_ALLOWED_NETWORKS": ["10.20.0.0/16"]}
    body = {"url": "http://10.20.3.4:8080/h", "events": ["message.opened"]}
    assert api.post("/api/v1/webhooks", body).status_code == 201
    body["url"] = "http://10.21.0.1/h"  # outside the allowed network
    assert api.post("/api/v1/webhooks", body).status_code == 400


def test_the_admin_form_refuses_internal_addresses(app):
    client = Client()
    client.force_login(User.objects.create_superuser("root", "", "pw"))
    response = client.post(
        "/admin/devices/webhookendpoint/add/",
        {
            "app": app.pk,
            "url": "http://169.254.169.254/latest/meta-data/",
            "events": ["message.opened"],
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["url"]
    assert "cloud metadata" in errors[0]
    assert not WebhookEndpoint.objects.exists()


@pytest.fixture
def fake_dns(monkeypatch):
    """Names under .kpns-test resolve to what the test says, and each lookup
    is counted; every other name resolves as usual."""
    answers: dict[str, list[str]] = {}
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".kpns-test"):
            lookups.append(host)
            if not answers.get(host):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            address = answers[host].pop(0)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups


def test_a_call_connects_to_the_address_it_checked_with_the_original_host(
    app, receiver, fake_dns
):
    """One lookup per call; the connection goes to that address (a second
    lookup would fail here), and the receiver sees the URL's name as Host."""
    answers, lookups = fake_dns
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    url = f"http://hooks.kpns-test:{port}/hooks/kpns"
    answers["hooks.kpns-test"] = ["8.8.8.8"]  # what the creation check saw
    _, row = queue_event(app, url)
    answers["hooks.kpns-test"] = ["127.0.0.1"]  # allow-listed (on premise)
    lookups.clear()
    webhooks.dispatch_due(now=timezone.now())
    row.refresh_from_db()
    assert (row.status, row.last_error) == ("succeeded", "")
    assert lookups == ["hooks.kpns-test"]
    [call] = receiver.calls
    assert call.headers["Host"] == f"hooks.kpns-test:{port}"


def test_a_name_that_now_resolves_inside_fails_at_once_without_a_call(
    app, receiver, fake_dns, settings
):
    """DNS rebinding: public when the endpoint was created, private at send
    time. The call is refused, recorded as failed and never retried."""
    answers, _ = fake_dns
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    answers["evil.kpns-test"] = ["8.8.4.4"]
    _, row = queue_event(app, f"http://evil.kpns-test:{port}/hooks/kpns")
    settings.KPNS = {**settings.KPNS, "WEBHOOK_ALLOWED_NETWORKS": []}
    answers["evil.kpns-test"] = ["127.0.0.1"]
    now = timezone.now()
    assert webhooks.dispatch_due(now=now) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_status_code) == ("failed", 1, None)
    assert row.last_error == (
        "Refused: evil.kpns-test resolves to 127.0.0.1, which is a loopback address."
    )
    assert webhooks.dispatch_due(now=now + timedelta(days=1)) == 0
    assert receiver.calls == []


def test_an_endpoint_outside_the_allow_list_at_send_time_is_refused(
    app, receiver, settings
):
    """The allow-list narrowed after the endpoint was saved: no call."""
    _, row = queue_event(app, receiver.url)
    settings.KPNS = {**settings.KPNS, "WEBHOOK_ALLOWED_NETWORKS": []}
    webhooks.dispatch_due(now=timezone.now())
    row.refresh_from_db()
    assert row.status == "failed" and "127.0.0.1 is a loopback" in row.last_error
    assert receiver.calls == []


def test_an_unresolvable_name_is_retried(app, fake_dns):
    _, row = queue_event(app, "https://gone.kpns-test/h")
    webhooks.dispatch_due(now=timezone.now())
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error.startswith("DNS: gone.kpns-test")
