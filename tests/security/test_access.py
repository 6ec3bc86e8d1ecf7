"""Access control: handshakes, revocation, isolation between devices, the role
matrix (tests/security/access_matrix.csv), CSRF, escaping, secrets at rest
and in logs.
"""

import asyncio
import csv
import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.test import Client
from django.urls import Resolver404, URLResolver, resolve, reverse
from django.urls import path as url_path
from django.utils import timezone

from campaigns import lifecycle, saved_templates, segments
from campaigns.models import Campaign
from campaigns.roles import MARKETER, ROLES
from devices.delivery import pushes, revocation
from devices.delivery.protocol import JSON, Ack, Error, Hello, Push, Welcome
from devices.integrations import apikeys, webhooks
from devices.models import Delivery, Device, Node, WebhookDelivery, WebhookEndpoint
from kpns_site.asgi import application
from tests.factories import make_api_key, make_app, make_device

pytestmark = [pytest.mark.django_db(transaction=True)]

MATRIX = Path(__file__).with_name("access_matrix.csv")
XSS = "<script>alert('kpns')</script>"
SQLI = "x'); DROP TABLE devices_device; --"


# Handshakes -----------------------------------------------------------------


async def try_socket(subprotocols, headers=None):
    communicator = WebsocketCommunicator(
        application, "/ws/v1/device/", subprotocols=subprotocols, headers=headers or []
    )
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected


def make_stale_device(app, days_unseen=271):
    """A device last connected longer ago than DEVICE_TOKEN_TTL_DAYS (270)."""
    device, token = make_device(app)
    seen = timezone.now() - timedelta(days=days_unseen)
    Device.objects.filter(pk=device.pk).update(last_seen_at=seen)
    device.refresh_from_db()
    return device, token


@pytest.mark.usefixtures("stop_nodes")
async def test_handshakes_without_a_valid_token_are_refused_before_accept():
    app = await database_sync_to_async(make_app)()
    other_app = await database_sync_to_async(make_app)()
    device, token = await database_sync_to_async(make_device)(app)
    revoked, revoked_token = await database_sync_to_async(make_device)(other_app)
    await database_sync_to_async(revocation.device_revoke)(device=revoked)
    _stale, expired_token = await database_sync_to_async(make_stale_device)(app)
    refused = {
        "missing": ["kpns.json.v1"],
        "empty": ["kpns.json.v1", "kpns.token."],
        "malformed": ["kpns.json.v1", "kpns.token.%%%not-base64%%%"],
        "too long": ["kpns.json.v1", "kpns.token." + "a" * 500],
        "hash instead of token": ["kpns.json.v1", f"kpns.token.{device.token_hash}"],
        "prefix only": ["kpns.json.v1", f"kpns.token.{device.token_prefix}"],
        "revoked": ["kpns.json.v1", f"kpns.token.{revoked_token}"],
        "expired": ["kpns.json.v1", f"kpns.token.{expired_token}"],
        "other device's hash": ["kpns.json.v1", f"kpns.token.{revoked.token_hash}"],
    }
    for name, offered in refused.items():
        assert not await try_socket(offered), name
    # Cross-site WebSocket hijacking: a foreign or null Origin is refused.
    good = ["kpns.json.v1", f"kpns.token.{token}"]
    for origin in (b"https://evil.example", b"null", b"http://127.0.0.1.evil.example"):
        assert not await try_socket(good, [(b"origin", origin)]), origin
    assert await try_socket(good)  # a native client (no Origin)
    assert await try_socket(good, [(b"origin", b"http://localhost:8000")])


@pytest.mark.usefixtures("stop_nodes")
async def test_revoked_device_socket_is_closed_by_the_heartbeat_even_without_event():
    """The revocation's close event may be lost (Redis down); the node
    heartbeat checks is_active every NODE_HEARTBEAT_SECONDS (5 s; 1 s here)."""
    app = await database_sync_to_async(make_app)()
    device, token = await database_sync_to_async(make_device)(app)
    communicator = WebsocketCommunicator(
        application,
        "/ws/v1/device/",
        subprotocols=["kpns.json.v1", f"kpns.token.{token}"],
    )
    assert (await communicator.connect(timeout=5))[0]
    await communicator.send_to(text_data=JSON.encode(Hello(last_seq=0)))
    await communicator.receive_output(5)
    started = time.monotonic()
    # Revoke behind the registry's back: no close event is sent.
    await database_sync_to_async(Device.objects.filter(pk=device.pk).update)(
        is_active=False
    )
    closed = await communicator.receive_output(10)
    assert closed == {"type": "websocket.close", "code": 4403}
    assert time.monotonic() - started < 5


# Isolation between devices -----------------------------------------------------


@pytest.mark.usefixtures("stop_nodes")
async def test_device_a_cannot_ack_or_open_device_b_messages():
    app = await database_sync_to_async(make_app)()
    a, token_a = await database_sync_to_async(make_device)(app)
    b, _token_b = await database_sync_to_async(make_device)(app)
    message_b, _ = await database_sync_to_async(pushes.push_to_devices)(
        app=app, device_ids=[b.pk], title="for b only"
    )
    message_a, _ = await database_sync_to_async(pushes.push_to_devices)(
        app=app, device_ids=[a.pk], title="for a"
    )
    communicator = WebsocketCommunicator(
        application,
        "/ws/v1/device/",
        subprotocols=["kpns.json.v1", f"kpns.token.{token_a}"],
    )
    await communicator.connect(timeout=5)
    await communicator.send_to(text_data=JSON.encode(Hello(last_seq=0)))
    assert isinstance(
        JSON.decode_server((await communicator.receive_output(5))["text"]), Welcome
    )
    push = JSON.decode_server((await communicator.receive_output(5))["text"])
    assert isinstance(push, Push) and push.id == str(message_a.pk)  # never B's
    # A acks and opens B's message with B's id and seq (both 1).
    for frame in (
        Ack(id=str(message_b.pk), seq=1),
        {"type": "opened", "id": str(message_b.pk), "seq": 1},
    ):
        text = JSON.encode(frame) if not isinstance(frame, dict) else _json(frame)
        await communicator.send_to(text_data=text)
    answer = JSON.decode_server((await communicator.receive_output(5))["text"])
    assert isinstance(answer, Error) and answer.code == "unknown_message"
    assert await communicator.receive_nothing(0.5)
    await communicator.disconnect()
    status = await database_sync_to_async(
        lambda: Delivery.objects.get(device=b, message=message_b).status
    )()
    assert status == "pending"
    mine = await database_sync_to_async(
        lambda: Delivery.objects.get(device=a, message=message_a).status
    )()
    assert mine in ("sent", "pending")


def _json(obj):
    import json

    return json.dumps(obj)


def test_device_rest_endpoint_only_shows_the_callers_device():
    app = make_app()
    other_app = make_app()
    a, token_a = make_device(app, alias="alice")
    b, _token_b = make_device(other_app, alias="bob")
    client = Client()
    mine = client.get("/api/v1/device", HTTP_AUTHORIZATION=f"Device {token_a}")
    assert mine.status_code == 200 and mine.json()["id"] == str(a.pk)
    # The hash, or another tenant's id, is not a credential.
    for credential in (a.token_hash, str(b.pk), b.token_hash):
        response = client.get(
            "/api/v1/device", HTTP_AUTHORIZATION=f"Device {credential}"
        )
        assert response.status_code == 401
    changed = client.patch(
        "/api/v1/device",
        {"alias": "mallory"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token_a}",
    )
    assert changed.status_code == 200
    b.refresh_from_db()
    assert b.alias == "bob"


def test_a_token_expires_after_the_ttl_without_a_connection(settings):
    app = make_app()
    stale, stale_token = make_stale_device(app)
    recent, recent_token = make_stale_device(app, days_unseen=269)
    client = Client()

    def status(token):
        response = client.get("/api/v1/device", HTTP_AUTHORIZATION=f"Device {token}")
        return response.status_code, response.headers["content-type"]

    assert status(stale_token) == (401, "application/problem+json")
    assert status(recent_token)[0] == 200
    # Never registered a connection: counted from registration.
    never, never_token = make_device(app)
    Device.objects.filter(pk=never.pk).update(
        created_at=timezone.now() - timedelta(days=300)
    )
    assert status(never_token)[0] == 401
    # Online now (a node holds its socket): never expired, however old the
    # last connect.
    Device.objects.filter(pk=stale.pk).update(node="node-a")
    assert status(stale_token)[0] == 200
    Device.objects.filter(pk=stale.pk).update(node=None)
    # 0 turns expiry off.
    settings.KPNS = {**settings.KPNS, "DEVICE_TOKEN_TTL_DAYS": 0}
    assert status(stale_token)[0] == 200
    assert status(never_token)[0] == 200


# The role matrix --------------------------------------------------------------
#
# access_matrix.csv holds one row per (path, method, form) with the expected
# outcome per role. For the admin it must be complete: every URL the admin
# site serves (each registered ModelAdmin's, the site's own) in GET and
# POST, and every changelist action in GET and POST, plus the confirmed
# POST (post=yes) of every action that asks first. The lists are taken from
# the admin site itself, so a new ModelAdmin, URL or action without a row
# fails test_access_matrix_covers_every_admin_url_and_action.

ADMIN_METHODS = ("GET", "POST")
# Kwargs that tell apart URLs sharing one route (the per-app index pages).
ROUTE_KWARGS = ("app_label",)


def _role_users():
    """One user per role: staff without permissions, each group of
    campaigns.roles (column = its name in lower case), a superuser."""
    users = {
        "staff": User.objects.create_user(
            "staff", password="pw-staff-123", is_staff=True
        ),
        "admin": User.objects.create_superuser("boss", "", "pw-boss-123"),
    }
    for name, permissions in ROLES.items():
        user = User.objects.create_user(name.lower(), is_staff=True)
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.get(content_type__app_label=label, codename=code)
            for label, code in permissions
        )
        user.groups.add(group)
        users[name.lower()] = user
    return users


def _rows():
    lines = [
        line for line in MATRIX.read_text().splitlines() if not line.startswith("#")
    ]
    return list(csv.DictReader(lines))


def _outcome(response):
    code = response.status_code
    location = response.get("Location", "")
    if code in (301, 302) and "/admin/login/" in location:
        return "login"
    if 200 <= code < 300:
        return "ok"
    if code in (301, 302):
        return "redirect"
    if code in (401, 403):
        return "deny"
    return str(code)


def _admin_prefix():
    return reverse("admin:index").lstrip("/")


def _admin_routes():
    """Every URL of the admin site, as (route, kwargs that select it)."""

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern).removeprefix("^")
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif pattern.name == "app_list":
                labels = {model._meta.app_label for model in admin.site._registry}
                for label in sorted(labels):
                    yield (route, (("app_label", label),))
            else:
                yield (route, ())

    return set(walk(admin.site.get_urls(), _admin_prefix()))


def _admin_actions():
    """(changelist path, action name, asks for confirmation) of every action."""
    for model, model_admin in admin.site._registry.items():
        changelist = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
        )
        for func, name, _description in model_admin._get_base_actions():
            asks = name == "delete_selected" or getattr(func, "asks_confirmation", 0)
            yield changelist, name, bool(asks)


def _route_of(path):
    """The admin route a concrete path resolves to, or None."""
    try:
        match = resolve(urlsplit(path).path)
    except Resolver404:
        return None
    if "admin" not in match.namespaces:
        return None
    kwargs = tuple((k, match.kwargs[k]) for k in ROUTE_KWARGS if k in match.kwargs)
    return (match.route, kwargs)


def _placeholders_filled(path):
    """Placeholders replaced by a syntactically plausible id (routes only)."""
    return re.sub(r"\{[a-z_]+\}", "1", path)


def _missing_admin_rows(rows):
    """What the table lacks for the admin, and rows naming nothing."""
    form = {(r["path"], r["method"]): [] for r in rows}
    for row in rows:
        form[(row["path"], row["method"])].append(dict(parse_qsl(row["form"])))
    covered, problems = set(), []
    for row in rows:
        if not row["path"].startswith("/" + _admin_prefix()):
            continue
        route = _route_of(_placeholders_filled(row["path"]))
        if route is None:
            problems.append(f"row names no admin URL: {row['path']}")
        elif "action" not in dict(parse_qsl(row["form"])):
            covered.add((route, row["method"]))
    for route, kwargs in sorted(_admin_routes()):
        for method in ADMIN_METHODS:
            if ((route, kwargs), method) not in covered:
                where = f" {dict(kwargs)}" if kwargs else ""
                problems.append(f"no {method} row for /{route}{where}")
    actions = set()
    for changelist, name, asks in _admin_actions():
        actions.add((changelist, name))
        bodies = {
            method: form.get((changelist, method), []) for method in ADMIN_METHODS
        }
        for method in ADMIN_METHODS:
            if not any(b.get("action") == name for b in bodies[method]):
                problems.append(f"no {method} row for action {name} on {changelist}")
        confirmed = any(
            b.get("action") == name and b.get("post") == "yes" for b in bodies["POST"]
        )
        if asks and not confirmed:
            problems.append(f"no confirmed POST row for {name} on {changelist}")
    for row in rows:
        name = dict(parse_qsl(row["form"])).get("action")
        if name and (row["path"], name) not in actions:
            problems.append(f"row names no action: {row['path']} {name}")
    return problems


def _matrix_world():
    """One object of every admin model, and the ids the table's
    placeholders stand for."""
    app = make_app()
    device, token = make_device(app, alias="matrix")
    message, _ = pushes.push_to_devices(app=app, device_ids=[device.pk], title="M")
    campaign = lifecycle.campaign_create(
        app=app, name="Matrix", title="Matrix", audience_kind="all"
    )
    sending = lifecycle.campaign_create(
        app=app, name="Sending", title="Sending", audience_kind="all"
    )
    lifecycle.campaign_schedule_now(campaign=sending)
    lifecycle.campaign_start(campaign_id=sending.pk, now=timezone.now())
    now = timezone.now()
    node = Node.objects.create(
        name="matrix-node", channel_name="c", hostname="h", pid=1,
        started_at=now, heartbeat_at=now,
    )  # fmt: skip
    # By hand: the access table does not depend on the URL rules.
    endpoint = WebhookEndpoint.objects.create(
        app=app, url="https://hooks.example.com/k", events=["device.unregistered"]
    )
    webhooks.event_emit(app_id=app.pk, event="device.unregistered", data={})
    segment = segments.segment_create(app=app, name="Matrix", spec={"tags_any": ["x"]})
    read_scopes = [scope for scope in apikeys.SCOPES if scope.endswith(":read")]
    readonly_key, readonly_secret = make_api_key(app, read_scopes)
    _send_key, send_secret = make_api_key(app, ["push:send"])
    users = _role_users()
    objects = {
        "app": app,
        "device": device,
        "message": message,
        "delivery": Delivery.objects.get(message=message),
        "node": node,
        "apikey": readonly_key,
        "webhookendpoint": endpoint,
        "webhookdelivery": WebhookDelivery.objects.get(endpoint=endpoint),
        "campaign": campaign,
        "sending": sending,
        "messagetemplate": saved_templates.template_create(
            app=app, name="Matrix", title="Hi {{ alias }}"
        ),
        "segment": segment,
        "user": users["staff"],
        "group": Group.objects.get(name=MARKETER),
    }
    ids = {f"{{{name}}}": str(obj.pk) for name, obj in objects.items()}
    ids["{device_ct}"] = str(ContentType.objects.get_for_model(Device).pk)
    headers = {
        "device": {"HTTP_AUTHORIZATION": f"Device {token}"},
        "readonly_key": {"HTTP_AUTHORIZATION": f"Bearer {readonly_secret}"},
        "send_key": {"HTTP_AUTHORIZATION": f"Bearer {send_secret}"},
    }
    return app, ids, users, headers


def _fill(text, ids):
    for placeholder, value in ids.items():
        text = text.replace(placeholder, value)
    return text


def _request(client, row, path, form, app, headers):
    method = row["method"].lower()
    kwargs = dict(headers)
    if path.startswith("/" + _admin_prefix()):
        # Admin forms: the row's form as the query (GET) or the body (POST).
        data = parse_qsl(form, keep_blank_values=True)
        if method == "get":
            return client.get(path + ("?" + form if form else ""), **kwargs)
        grouped = {}
        for name, value in data:
            grouped.setdefault(name, []).append(value)
        return client.post(path, grouped, **kwargs)
    if method in ("post", "patch", "put"):
        body = {"client_key": app.client_key, "platform": "web"}
        if method == "patch":
            body = {"alias": "x"}
        kwargs.update(data=body, content_type="application/json")
    return getattr(client, method)(path, **kwargs)


def _run_matrix(rows):
    """The outcome of every cell, each request rolled back so no row
    (a revoke, a delete, a logout) changes what the next one sees."""
    app, ids, users, headers = _matrix_world()
    sessions = {}
    for name, user in users.items():
        client = Client()
        client.force_login(user)
        sessions[name] = client.cookies[settings.SESSION_COOKIE_NAME].value
    roles = [r for r in rows[0] if r not in ("path", "method", "form")]
    outcomes = {}
    for row in rows:
        path, form = _fill(row["path"], ids), _fill(row["form"], ids)
        for role in roles:
            client = Client()
            if role in sessions:
                client.cookies[settings.SESSION_COOKIE_NAME] = sessions[role]
            with transaction.atomic():
                response = _request(client, row, path, form, app, headers.get(role, {}))
                transaction.set_rollback(True)
            outcomes[(row["path"], row["method"], row["form"], role)] = _outcome(
                response
            )
    return outcomes


def test_role_matrix_matches_the_committed_table():
    rows = _rows()
    roles = [r for r in rows[0] if r not in ("path", "method", "form")]
    # A column per role of campaigns.roles, besides the fixed ones.
    assert {name.lower() for name in ROLES} <= set(roles)
    assert {"anonymous", "staff", "admin"} <= set(roles)
    outcomes = _run_matrix(rows)
    mismatches = []
    for row in rows:
        for role in roles:
            got = outcomes[(row["path"], row["method"], row["form"], role)]
            if got != row[role]:
                mismatches.append(
                    f"{row['method']} {row['path']} {row['form']} as {role}: "
                    f"{got}, table says {row[role]}"
                )
    assert not mismatches, "\n".join(mismatches)


def test_access_matrix_covers_every_admin_url_and_action():
    problems = _missing_admin_rows(_rows())
    assert not problems, "add these rows to access_matrix.csv:\n" + "\n".join(problems)


def test_a_new_admin_action_or_url_without_a_row_is_reported(monkeypatch):
    """The completeness check reads the live admin site, not a list."""
    from devices.admin import DeviceAdmin

    @admin.action(description="Archive", permissions=["change"])
    def archive(model_admin, request, queryset):
        return None

    device_admin = admin.site._registry[Device]
    monkeypatch.setattr(DeviceAdmin, "archive", archive, raising=False)
    monkeypatch.setattr(device_admin, "actions", [*device_admin.actions, "archive"])
    campaign_admin = admin.site._registry[Campaign]
    own_urls = campaign_admin.get_urls

    def more_urls():
        return [url_path("<int:pk>/export.xlsx", lambda r, pk: None), *own_urls()]

    monkeypatch.setattr(campaign_admin, "get_urls", more_urls)
    problems = _missing_admin_rows(_rows())
    assert any("action archive on /admin/devices/device/" in p for p in problems)
    assert any("/admin/campaigns/campaign/<int:pk>/export.xlsx" in p for p in problems)
    # And a dropped row is missed: here every row of the revoke actions.
    rows = [r for r in _rows() if "action=revoke" not in r["form"]]
    missed = _missing_admin_rows(rows)
    assert "no POST row for action revoke on /admin/devices/device/" in missed
    assert "no confirmed POST row for revoke on /admin/devices/device/" in missed


def test_every_admin_post_without_csrf_is_refused():
    app = make_app()
    device, _token = make_device(app)
    campaign = lifecycle.campaign_create(
        app=app, name="Csrf", title="Csrf", audience_kind="all"
    )
    admin = User.objects.create_superuser("boss", "", "pw-boss-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    posts = [
        "/admin/devices/app/add/",
        f"/admin/devices/app/{app.pk}/change/",
        "/admin/devices/device/",
        f"/admin/devices/device/{device.pk}/change/",
        "/admin/campaigns/campaign/",
        "/admin/campaigns/campaign/add/",
        f"/admin/campaigns/campaign/{campaign.pk}/change/",
        f"/admin/campaigns/campaign/{campaign.pk}/delete/",
        "/admin/auth/user/add/",
        "/admin/logout/",
    ]
    for path in posts:
        response = client.post(
            path, {"action": "delete_selected", "_selected_action": [1]}
        )
        assert response.status_code == 403, (path, response.status_code)
    anonymous = Client(enforce_csrf_checks=True)
    login = anonymous.post(
        "/admin/login/", {"username": "boss", "password": "pw-boss-123"}
    )
    assert login.status_code == 403
    assert Device.objects.filter(pk=device.pk).exists()


# Hostile text is stored exactly and rendered escaped -----------------------------


def test_script_and_sql_payloads_are_stored_exactly_and_rendered_escaped():
    app = make_app(name=XSS)
    client = Client()
    response = client.post(
        "/api/v1/devices/register",
        {
            "client_key": app.client_key,
            "platform": "web",
            "alias": XSS + SQLI,
            "locale": "en",
            "app_version": SQLI[:32],
            "attributes": {"note": XSS, "q": SQLI},
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    device = Device.objects.get(pk=response.json()["id"])
    assert device.alias == XSS + SQLI
    assert device.attributes == {"note": XSS, "q": SQLI}
    campaign = lifecycle.campaign_create(
        app=app, name=XSS, title=XSS + SQLI, body=SQLI, audience_kind="all"
    )
    assert Device.objects.count() == 1  # the SQL did nothing
    admin = User.objects.create_superuser("boss", "", "pw-boss-123")
    client.force_login(admin)
    pages = [
        "/admin/devices/device/",
        f"/admin/devices/device/{device.pk}/change/",
        "/admin/devices/app/",
        "/admin/campaigns/campaign/",
        f"/admin/campaigns/campaign/{campaign.pk}/change/",
    ]
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200, path
        html = page.content.decode()
        assert XSS not in html, path
        assert "&lt;script&gt;" in html, path


# Secrets at rest and in logs -------------------------------------------------------


def test_no_device_token_in_a_database_dump_or_in_logs(caplog):
    if connection.vendor != "postgresql":
        pytest.skip("pg_dump needs PostgreSQL")
    app = make_app()
    client = Client()
    tokens = []
    with caplog.at_level("DEBUG"):
        for _ in range(3):
            response = client.post(
                "/api/v1/devices/register",
                {"client_key": app.client_key, "platform": "android"},
                content_type="application/json",
            )
            tokens.append(response.json()["token"])
        for token in tokens:
            client.get("/api/v1/device", HTTP_AUTHORIZATION=f"Device {token}")
        client.get("/api/v1/device", HTTP_AUTHORIZATION="Device wrong-token-value")
    conf = connection.settings_dict
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            conf["HOST"] or "127.0.0.1",
            "-p",
            str(conf["PORT"] or 5432),
            "-U",
            conf["USER"] or "postgres",
            conf["NAME"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PGPASSWORD": conf.get("PASSWORD") or "", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "devices_device" in dump
    for token in tokens:
        assert token not in dump
        assert token not in caplog.text


@pytest.mark.e2e
async def test_tokens_never_reach_server_logs(tmp_path):
    import httpx
    import websockets

    from tests.e2e.servers import daphne_servers
    from tests.reliability.services import private_redis

    app = await database_sync_to_async(make_app)()
    with (
        private_redis() as redis,
        daphne_servers(
            1, redis_url=redis.url, tmp_path=tmp_path, extra_env={"LOG_LEVEL": "DEBUG"}
        ) as servers,
    ):
        server = servers[0]
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            registered = await http.post(
                "/api/v1/devices/register",
                json={"client_key": app.client_key, "platform": "web"},
            )
            token = registered.json()["token"]
            await http.get(
                "/api/v1/device", headers={"Authorization": f"Device {token}"}
            )
        async with websockets.connect(
            server.ws_url, subprotocols=["kpns.json.v1", f"kpns.token.{token}"]
        ) as ws:
            await ws.send(JSON.encode(Hello(last_seq=0)))
            await asyncio.wait_for(ws.recv(), 5)
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(
                server.ws_url,
                subprotocols=["kpns.json.v1", "kpns.token.bogus-token-1234"],
            )
        await asyncio.sleep(0.3)
        output = server.output()
        assert token not in output
        assert "bogus-token-1234" not in output
