"""An app's frequency cap and quiet hours in the admin (an administrator's page)."""

from datetime import time

import pytest
from django.contrib.auth.models import User

from devices.models import App
from tests.admin.test_provider_secrets import page_data
from tests.factories import make_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss(client):
    user = User.objects.create_superuser("boss", "", "pw-boss-123")
    client.force_login(user)
    return user


def app_form(client, app, **overrides):
    """The app's change page as the browser would post it (with the native
    push inline), with these fields changed."""
    data = page_data(client.get(f"/admin/devices/app/{app.pk}/change/"))
    data.update(overrides, _save="Save")
    return data


def test_an_admin_sets_the_apps_cap_and_quiet_hours(client, boss):
    app = make_app(name="Shop", default_timezone="Europe/Paris")
    page = client.get(f"/admin/devices/app/{app.pk}/change/").content.decode()
    assert "a device in Tokyo gets a deferred push at 08:00 JST" in page
    response = client.post(
        f"/admin/devices/app/{app.pk}/change/",
        app_form(
            client,
            app,
            frequency_cap_count="3",
            quiet_hours_start="22:00",
            quiet_hours_end="08:00",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    app.refresh_from_db()
    assert app.frequency_cap_count == 3
    assert app.frequency_cap_window_seconds == 86400
    assert (app.quiet_hours_start, app.quiet_hours_end) == (time(22), time(8))
    listing = client.get("/admin/devices/app/").content.decode()
    assert "3 per 1 day; quiet 22:00-08:00" in listing


def test_half_a_quiet_window_or_a_zero_cap_is_refused_at_the_field(client, boss):
    app = make_app(name="Shop")
    response = client.post(
        f"/admin/devices/app/{app.pk}/change/",
        app_form(client, app, frequency_cap_count="0", quiet_hours_start="22:00"),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "frequency_cap_count" in errors
    assert "quiet_hours_end" in errors
    app.refresh_from_db()
    assert app.frequency_cap_count is None
    assert app.quiet_hours_start is None


def test_a_new_app_keeps_the_cap_it_was_created_with(client, boss):
    response = client.post(
        "/admin/devices/app/add/",
        {
            "name": "New",
            "default_timezone": "UTC",
            "frequency_cap_count": "2",
            "frequency_cap_window_seconds": "3600",
            "quiet_hours_start": "",
            "quiet_hours_end": "",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    app = App.objects.get(name="New")
    assert (app.frequency_cap_count, app.frequency_cap_window_seconds) == (2, 3600)
    assert app.client_key
