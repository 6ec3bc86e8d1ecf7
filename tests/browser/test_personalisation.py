"""Personalisation and templates in a real browser (Debian's Chromium), as
a Marketer at 1366 x 900: a placeholder previewed for a device that has
the value and for one that has not, a syntax error shown before saving,
and a campaign started from a saved template. Full-page screenshots under
var/screenshots/."""

import pytest
from django.contrib.auth.models import User

from campaigns import saved_templates
from campaigns.models import Campaign
from campaigns.roles import marketer_group
from tests.browser import test_console
from tests.browser.test_console import WIDTH, page_width, shot
from tests.factories import make_app, make_device

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HI = 'Hi {{ first_name|default:"there" }}'
console = test_console.console  # the Marketer's logged-in page (a fixture)


def world():
    app = make_app(name="Shop app")
    make_device(
        app,
        alias="amelie",
        tags=["vip"],
        locale="fr-FR",
        attributes={"first_name": "Amélie", "plan": "gold"},
    )
    make_device(app, alias="bare", tags=["vip"], platform="ios", locale="en")
    make_device(app, alias="outsider", tags=["newsletter"])
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(marketer_group())
    return app


def preview_shows(page, title):
    page.wait_for_function(
        "t => document.getElementById('preview-title').textContent === t", arg=title
    )


@pytest.mark.timeout(150)
def test_a_placeholder_is_previewed_per_device_and_saved(console, orm):
    app = orm(world)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    page.select_option("#id_app", str(app.pk))
    page.fill("#id_name", "Welcome back")
    page.click("#kpns-add-group")  # the audience builder: tag has vip
    page.fill("#kpns-g0-r0-value", "vip")
    page.fill("#id_title", HI)
    page.fill("#id_body", 'Your {{ plan|default:"free"|upper }} plan is waiting.')
    page.fill("#id_data", '{"greeting": "{{ first_name|default:\\"friend\\" }}"}')
    # A random device of the audience (vip): one of the two, never outsider.
    page.wait_for_function(
        "document.getElementById('preview-sample-note')"
        ".textContent.startsWith('As sent to')"
    )
    note = page.inner_text("#preview-sample-note")
    assert "amelie" in note or "bare" in note
    page.fill("#preview-device", "bare")
    preview_shows(page, "Hi there")
    assert page.inner_text("#preview-body") == "Your FREE plan is waiting."
    assert page.inner_text("#preview-data").split() == ["greeting", "friend"]
    assert page.inner_text("#preview-sample-note") == "As sent to bare (ios, en)"
    # A placeholder that does not parse is said before saving.
    page.fill("#id_title", "Hi {{ first_name|shout }}")
    page.wait_for_selector("#preview-errors:not([hidden])")
    assert "{{ first_name|shout }} at character 4: unknown filter 'shout'" in (
        page.inner_text("#preview-errors")
    )
    page.fill("#id_title", HI)
    page.wait_for_selector("#preview-errors", state="hidden")
    page.fill("#preview-device", "amelie")
    preview_shows(page, "Hi Amélie")
    assert page.inner_text("#preview-body") == "Your GOLD plan is waiting."
    assert page.inner_text("#preview-data").split() == ["greeting", "Amélie"]
    assert (
        page.inner_text("#preview-sample-note") == "As sent to amelie (android, fr-FR)"
    )
    assert " of 4096 bytes" in page.inner_text("#preview-size")
    assert page_width(page) <= WIDTH
    shot(page, "console-personalisation")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    campaign = orm(Campaign.objects.get)
    assert campaign.title == HI
    assert campaign.data == {"greeting": '{{ first_name|default:"friend" }}'}
    # Back on the saved campaign, the preview still renders per device.
    page.fill("#preview-device", "amelie")
    preview_shows(page, "Hi Amélie")


@pytest.mark.timeout(150)
def test_a_campaign_starts_from_a_saved_template(console, orm):
    app = orm(world)
    template = orm(
        saved_templates.template_create,
        app=app,
        name="Welcome",
        title=HI,
        body="We kept your cart, {{ first_name|default:'friend' }}.",
    )
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/messagetemplate/{template.pk}/change/")
    page.fill("#preview-device", "amelie")
    preview_shows(page, "Hi Amélie")
    assert page.inner_text("#preview-body") == "We kept your cart, Amélie."
    shot(page, "console-template")
    page.click("#start-campaign")
    page.wait_for_selector("#kpns-template-pick")
    assert page.input_value("#id_title") == HI
    assert page.input_value("#id_name") == "Welcome"
    assert page.input_value("#id_app") == str(app.pk)
    assert page.input_value("#kpns-template-pick") == str(template.pk)
    page.fill("#preview-device", "bare")
    preview_shows(page, "Hi there")
    assert page.inner_text("#preview-body") == "We kept your cart, friend."
    assert page.inner_text("#kpns-preview .kpns-app-name") == "Shop app"
    assert page_width(page) <= WIDTH
    shot(page, "console-from-template")


@pytest.mark.timeout(150)
def test_the_preview_renders_the_variant_and_language_chosen(console, orm):
    app = orm(world)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    page.select_option("#id_app", str(app.pk))
    page.fill("#id_title", HI)
    page.click("#add-variant")
    page.fill('[name="variants-0-title"]', "Psst {{ first_name|upper }}")
    page.fill("#preview-device", "amelie")
    preview_shows(page, "Hi Amélie")
    page.select_option("#preview-variant", "B")
    preview_shows(page, "Psst AMÉLIE")
    page.click("#add-language")  # a language version of B, the variant shown
    page.fill('[name="languages-0-locale"]', "fr")
    page.fill('[name="languages-0-title"]', 'Bonjour {{ first_name|default:"toi" }}')
    page.select_option("#preview-language", "fr")
    preview_shows(page, "Bonjour Amélie")
    page.fill("#preview-device", "bare")
    preview_shows(page, "Bonjour toi")
    assert not page.is_visible("#preview-errors")
    shot(page, "console-personalisation-variants")
