"""The app's provider keys in a real browser: the FCM service account is
pasted into the write-only field, saved, and the page that comes back
shows when it was set and its fingerprint, never the key. Screenshot:
var/screenshots/admin_provider_secrets.png."""

import pytest
from django.contrib.auth.models import User

from devices.native import providerkeys
from devices.native.models import AppProviderConfig
from tests.admin.test_provider_secrets import pieces, service_account
from tests.browser.test_console import HEIGHT, WIDTH, shot
from tests.factories import make_app

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_pasted_service_account_is_saved_and_not_shown(browser, live_server, orm):
    app = orm(lambda: make_app(name="Shop app"))
    orm(lambda: User.objects.create_superuser("boss", "", "pw-boss-123"))
    account = service_account()
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools", timeout=10_000)
    page.goto(f"{live_server.url}/admin/devices/app/{app.pk}/change/")
    page.fill("#id_provider_config-0-new_fcm_service_account", account)
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist", timeout=10_000)
    html = page.content()
    shot(page, "admin_provider_secrets")
    context.close()

    config = orm(lambda: AppProviderConfig.objects.get(app=app))
    assert config.fcm_service_account == account
    assert f"fingerprint {providerkeys.fingerprint(account)}" in html
    assert not [piece for piece in pieces(account) if piece in html]
    assert page_field_empty(html)


def page_field_empty(html: str) -> bool:
    start = html.index('name="provider_config-0-new_fcm_service_account"')
    textarea = html[start : html.index("</textarea>", start)]
    return textarea.rstrip().endswith(">")
