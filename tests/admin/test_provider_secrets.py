"""Provider secrets in the admin: written once, sealed, never shown again.

The app's page has a write-only form for the FCM service account and the
APNs .p8 key; after saving, every admin page is crawled and searched for
any piece of the secrets (and of the VAPID private key)."""

import json
import re
from datetime import date, datetime
from html import unescape

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.contrib.auth.models import User
from django.db import connection

from devices.native import providerkeys, services
from devices.native.models import AppProviderConfig, PushCredential
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss(client):
    user = User.objects.create_superuser("boss", "", "pw-boss-123")
    client.force_login(user)
    return user


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def service_account() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "acme-push",
            "private_key_id": "0123abcd",
            "private_key": pem(key),
            "client_email": "kpns@acme-push.iam.gserviceaccount.com",
        }
    )


def p8() -> str:
    return pem(ec.generate_private_key(ec.SECP256R1()))


def pieces(secret: str) -> list[str]:
    """What must never appear: every line of a PEM body (each a slice of
    the key), in any escaping a page might use, and the whole value."""
    text = secret.replace("\\n", "\n")
    lines = [
        line.strip()
        for line in text.splitlines()
        if len(line.strip()) >= 16 and "PRIVATE KEY" not in line
    ]
    body = [re.sub(r"[^A-Za-z0-9+/=]", "", line) for line in lines]
    return [b for b in body if len(b) >= 16] + [secret]


def page_data(response) -> dict:
    """The form of an admin change page as the browser would post it."""
    data: dict = {}

    def put(form, name, field):
        value = form.initial.get(name, field.initial)
        if callable(value):
            value = value()
        if value is None or value is False:
            return
        if hasattr(value, "pk"):
            value = value.pk
        if isinstance(value, datetime | date):
            value = value.isoformat()
        data[form.add_prefix(name)] = value

    main = response.context["adminform"].form
    for name, field in main.fields.items():
        put(main, name, field)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management.initial[name]
        for form in formset.forms:
            for name, field in form.fields.items():
                put(form, name, field)
    return data


def change_url(app) -> str:
    return f"/admin/devices/app/{app.pk}/change/"


def prefix() -> str:
    return "provider_config-0-"


def save(client, app, **fields):
    data = page_data(client.get(change_url(app)))
    data.update({prefix() + name: value for name, value in fields.items()})
    return client.post(change_url(app), data)


def crawl(client, start="/admin/", limit=400) -> dict[str, str]:
    """Every admin page reachable by links from the index (GET only)."""
    seen: dict[str, str] = {}
    queue = [start]
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen or "logout" in url:
            continue
        response = client.get(url)
        if response.status_code != 200:
            seen[url] = ""
            continue
        html = response.content.decode()
        seen[url] = html
        for href in re.findall(r'href="(/admin/[^"#]*)"', html):
            href = unescape(href)
            if href not in seen:
                queue.append(href)
    return seen


def leaks(pages: dict[str, str], secrets: list[str]) -> list[tuple[str, str]]:
    found = []
    for url, html in pages.items():
        flat = html.replace("\\n", "").replace("&#x27;", "'")
        for secret in secrets:
            for piece in pieces(secret):
                if piece in html or piece in flat:
                    found.append((url, piece[:20]))
    return found


def raw_row(config_id) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT vapid_private_key, fcm_service_account, apns_key "
            "FROM native_appproviderconfig WHERE id = %s",
            [config_id],
        )
        return cursor.fetchone()


def test_saved_secrets_are_sealed_and_no_admin_page_shows_them(client, boss):
    app = make_app(name="Acme")
    account, key = service_account(), p8()
    response = save(
        client,
        app,
        new_fcm_service_account=account,
        new_apns_key=key,
        apns_key_id="KEY1234567",
        apns_team_id="TEAM123456",
        apns_bundle_id="com.acme.app",
        apns_environment="sandbox",
    )
    assert response.status_code == 302, response.content.decode()[:3000]

    config = AppProviderConfig.objects.get(app=app)
    assert config.fcm_service_account == account
    assert config.apns_key.strip() == key.strip()
    assert config.fcm_project_id == "acme-push"  # taken from the JSON key
    assert config.apns_environment == "sandbox"
    stored = raw_row(config.pk)
    assert all(value.startswith("fernet:") for value in stored)
    secrets = [config.vapid_private_key, account, key]
    for value, secret in zip(stored, secrets, strict=True):
        assert not any(piece in value for piece in pieces(secret))

    page = client.get(change_url(app)).content.decode()
    assert f"fingerprint {providerkeys.fingerprint(account)}" in page
    assert f"fingerprint {providerkeys.fingerprint(key.strip() + chr(10))}" in page
    assert page.count("set on ") == 3  # VAPID, FCM, APNs

    pages = crawl(client)
    assert change_url(app) in pages and len(pages) > 30
    assert leaks(pages, [account, key, config.vapid_private_key]) == []


def test_a_form_that_fails_does_not_echo_the_secret_back(client, boss):
    app = make_app()
    key = p8()
    response = save(client, app, new_apns_key=key, apns_bundle_id="com.acme.app")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Needed with an APNs key." in html
    assert leaks({"failed form": html}, [key]) == []
    assert AppProviderConfig.objects.get(app=app).apns_key == ""


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("{not json", "The service account is not JSON."),
        ('{"type": "service_account"}', "The service account lacks project_id"),
        (
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "p",
                    "client_email": "a@b",
                    "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n",
                }
            ),
            "private_key does not load",
        ),
    ],
)
def test_a_bad_service_account_is_refused_clearly(client, boss, value, error):
    app = make_app()
    response = save(client, app, new_fcm_service_account=value)
    assert response.status_code == 200
    assert error in unescape(response.content.decode())
    assert AppProviderConfig.objects.get(app=app).fcm_service_account == ""


def test_an_rsa_key_is_not_an_apns_key(client, boss):
    app = make_app()
    rsa_pem = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    response = save(
        client,
        app,
        new_apns_key=rsa_pem,
        apns_key_id="KEY1234567",
        apns_team_id="TEAM123456",
        apns_bundle_id="com.acme.app",
    )
    assert "not a P-256 (ES256) key" in unescape(response.content.decode())


def test_a_secret_is_replaced_and_cleared(client, boss):
    app = make_app()
    first, second = service_account(), service_account()
    assert save(client, app, new_fcm_service_account=first).status_code == 302
    # Saving the page again with the field empty keeps the secret.
    assert save(client, app, grace_seconds="7").status_code == 302
    config = AppProviderConfig.objects.get(app=app)
    assert (config.fcm_service_account, config.grace_seconds) == (first, 7.0)

    assert save(client, app, new_fcm_service_account=second).status_code == 302
    page = client.get(change_url(app)).content.decode()
    assert providerkeys.fingerprint(second) in page
    assert providerkeys.fingerprint(first) not in page

    assert save(client, app, clear_fcm_service_account="on").status_code == 302
    config = AppProviderConfig.objects.get(app=app)
    assert config.fcm_service_account == ""
    assert config.fcm_service_account_set_at is None
    assert raw_row(config.pk)[1] == ""
    page = client.get(change_url(app)).content.decode()
    assert "not set" in page


def test_regenerating_vapid_keys_asks_first_then_drops_subscriptions(client, boss):
    app = make_app()
    device, _ = make_device(app, platform="web")
    credential = services.credential_register(
        device=device,
        kind="webpush",
        endpoint="https://fcm.googleapis.com/fcm/send/abc",
        p256dh="p",
        auth="a",
    )
    before = AppProviderConfig.objects.get(app=app)
    form = {"action": "regenerate_vapid_keys", "_selected_action": [str(app.pk)]}
    asked = client.post("/admin/devices/app/", form)
    assert (
        asked.status_code == 200 and "browser subscriptions" in asked.content.decode()
    )
    assert AppProviderConfig.objects.get(app=app).vapid_public_key == (
        before.vapid_public_key
    )

    done = client.post("/admin/devices/app/", {**form, "post": "yes"})
    assert done.status_code == 302
    after = AppProviderConfig.objects.get(app=app)
    assert after.vapid_public_key != before.vapid_public_key
    assert after.vapid_private_key != before.vapid_private_key
    assert after.vapid_generated_at > before.vapid_generated_at
    credential.refresh_from_db()
    assert not credential.is_active
    assert credential.deactivation_reason == providerkeys.VAPID_REGENERATED
    assert PushCredential.objects.filter(is_active=True).count() == 0
