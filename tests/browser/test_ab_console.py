"""An A/B campaign with a French version in a real browser (Debian's
Chromium) as a Marketer, at 1366 x 900: two variants and a French version
composed, the preview switched between them, sent, the winner chosen by the
scheduler's step with a later clock, and shown on the campaign page. Full
page screenshots under var/screenshots/."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import abtest, sender
from campaigns.models import Campaign, CampaignStatus
from devices.delivery import receipts
from devices.models import Delivery
from tests.browser import test_console as base
from tests.factories import make_device

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

console = base.console  # the Marketer's browser page, logged in by login()
WIDTH, page_width, world = base.WIDTH, base.page_width, base.world


def shot(page, name):
    """From the top: the preview and the admin's sidebar are sticky."""
    page.evaluate("window.scrollTo(0, 0)")
    return base.shot(page, name)


def audience(app, french=20, english=20):
    for i in range(french):
        make_device(app, locale="fr-FR" if i % 2 else "fr-CA", alias=f"fr-{i}")
    for i in range(english):
        make_device(app, locale="en-GB", platform="ios", alias=f"en-{i}")


def add_row(page, button, index, fields):
    page.click(button)
    prefix = "variants" if button == "#add-variant" else "languages"
    for name, value in fields.items():
        selector = f'[name="{prefix}-{index}-{name}"]'
        if name in ("key", "variant"):
            page.select_option(selector, value)
        else:
            page.fill(selector, value)


def open_variant(campaign_id, variant):
    """The devices of one variant ack and open it (the better variant)."""
    rows = list(
        Delivery.objects.filter(
            message__campaign_link__campaign_id=campaign_id,
            message__campaign_link__variant=variant,
        )
    )
    receipts.receipts_record(
        receipts.Receipts(
            sent=[],
            delivered=[row.pk for row in rows],
            opened=[(r.device_id, r.seq, str(r.message_id)) for r in rows],
        )
    )


def deliver_variant(campaign_id, variant):
    rows = Delivery.objects.filter(
        message__campaign_link__campaign_id=campaign_id,
        message__campaign_link__variant=variant,
    )
    receipts.receipts_record(
        receipts.Receipts(sent=[], delivered=list(rows.values_list("pk", flat=True)))
    )


@pytest.mark.timeout(180)
def test_ab_campaign_with_a_french_version_and_its_automatic_winner(console, orm):
    app = orm(world)
    orm(audience, app)
    page = console
    page.login()
    page.goto(f"{page.base}/admin/campaigns/campaign/add/")
    page.select_option("#id_app", str(app.pk))
    page.wait_for_function(
        "document.getElementById('est-matching').textContent === '40'"
    )
    page.fill("#id_name", "Summer A/B")
    page.fill("#id_title", "Summer sale: 30% off")
    page.fill("#id_body", "Everything in the shop, this weekend.")
    page.select_option("#id_audience_kind", "all")
    page.check("#id_confirm_everyone")
    page.fill("#id_split_percent", "50")
    page.fill("#id_test_percent", "50")
    page.select_option("#id_winner_metric", "opened")
    page.fill("#id_winner_window_seconds", "2h")
    add_row(page, "#add-variant", 0, {
        "key": "B", "split_percent": "50", "title": "Free shipping all summer",
        "body": "No minimum, every order.",
    })  # fmt: skip
    add_row(page, "#add-language", 0, {
        "variant": "A", "locale": "fr", "title": "Soldes d'été : -30 %",
        "body": "Toute la boutique, ce week-end.",
    })  # fmt: skip
    add_row(page, "#add-language", 1, {
        "variant": "B", "locale": "fr", "title": "Livraison offerte tout l'été",
    })  # fmt: skip
    # The preview switches variant and language.
    page.select_option("#preview-variant", "A")
    page.select_option("#preview-language", "fr")
    page.wait_for_function(
        "document.getElementById('preview-title').textContent"
        ' === "Soldes d\'été : -30 %"'
    )
    assert page.inner_text("#preview-body") == "Toute la boutique, ce week-end."
    # The personalised preview (a sample device) shows the same version.
    page.wait_for_selector("#preview-errors", state="hidden")
    shot(page, "console-language-preview")
    # B has a French version too: the language chosen stays.
    page.select_option("#preview-variant", "B")
    assert page.input_value("#preview-language") == "fr"
    page.wait_for_function(
        "document.getElementById('preview-title').textContent"
        ' === "Livraison offerte tout l\'été"'
    )
    # A French version's empty body keeps the variant's own.
    assert page.inner_text("#preview-body") == "No minimum, every order."
    page.select_option("#preview-language", "")
    page.wait_for_function(
        "document.getElementById('preview-title').textContent"
        " === 'Free shipping all summer'"
    )
    assert page_width(page) <= WIDTH
    page.wait_for_selector("#preview-errors", state="hidden")
    shot(page, "console-ab-compose")
    page.click("#submit-send_now")
    page.wait_for_selector(".messagelist li")
    assert "queued to send now" in page.inner_text(".messagelist")
    campaign = orm(Campaign.objects.get)
    assert campaign.status == CampaignStatus.SENDING
    started = campaign.started_at
    orm(sender.send_due, now=started)  # the offline devices of the test group
    tested = orm(Delivery.objects.count)
    assert 0 < tested < 40
    orm(deliver_variant, campaign.pk, "A")
    orm(open_variant, campaign.pk, "B")
    page.reload()
    page.wait_for_selector("#variant-stats")
    assert "Send B to the rest" in page.inner_text("#variant-stats")
    assert "waits for the winner" in page.inner_text("#kpns-winner-wait")
    assert page_width(page) <= WIDTH
    shot(page, "console-ab-test")
    # The scheduler's step, with its clock two hours on.
    later = started + timedelta(hours=2, seconds=1)
    assert orm(abtest.winners_decide_due, now=later) == 1
    orm(sender.send_due, now=later)
    assert orm(Delivery.objects.count) == 40
    french_b = orm(
        lambda: set(
            Delivery.objects.filter(device__locale__startswith="fr")
            .exclude(message__campaign_link__variant="A")
            .values_list("message__title", flat=True)
        )
    )
    assert french_b == {"Livraison offerte tout l'été"}
    page.reload()
    page.wait_for_selector("#kpns-winner")
    winner = page.inner_text("#kpns-winner")
    assert "Winner: variant B" in winner
    assert "Chosen automatically after 2 hours" in winner
    assert "open rate 100.0%" in winner
    # The label, before and after the stats poll (console.js) refreshed it.
    page.wait_for_timeout(500)
    assert page.inner_text("#campaign-status") == "Sent"
    assert "fr" in page.inner_text("#language-stats")
    assert page_width(page) <= WIDTH
    shot(page, "console-ab-winner")
    assert orm(Campaign.objects.get).finished_at <= timezone.now() + timedelta(hours=3)
