"""A/B variants and languages in the composer, and the A/B results on the
campaign page, as a Marketer through Django's test client."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from campaigns import abtest, sender
from campaigns.models import Campaign, CampaignStatus
from tests.admin.test_campaign_admin import campaign_form
from tests.admin.test_console import CAMPAIGNS, change_url
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(client):
    user = User.objects.create_user("mary", password="pw-mary-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    client.force_login(user)
    return user


def subforms(variants=(), languages=()):
    """The posted variants and languages sub-forms."""
    data = {
        "variants-TOTAL_FORMS": str(len(variants)),
        "variants-INITIAL_FORMS": "0",
        "languages-TOTAL_FORMS": str(len(languages)),
        "languages-INITIAL_FORMS": "0",
    }
    for prefix, rows in (("variants", variants), ("languages", languages)):
        for index, row in enumerate(rows):
            for name, value in row.items():
                data[f"{prefix}-{index}-{name}"] = value
    return data


def ab_form(app, **overrides):
    return {
        **campaign_form(app),
        "split_percent": "50",
        "test_percent": "20",
        "winner_metric": "opened",
        "winner_window_seconds": "2h",
        **subforms(
            variants=[{"key": "B", "split_percent": "50", "title": "B title"}],
            languages=[{"variant": "B", "locale": "fr", "title": "B en français"}],
        ),
        **overrides,
    }


def test_the_composer_saves_variants_and_languages(client, marketer):
    app = make_app()
    response = client.post(f"{CAMPAIGNS}add/", ab_form(app))
    assert response.status_code == 302, response.content.decode()[:3000]
    campaign = Campaign.objects.get()
    assert (campaign.split_percent, campaign.test_percent) == (50, 20)
    assert campaign.winner_window_seconds == 7200
    assert [(v.key, v.title) for v in campaign.variants.all()] == [("B", "B title")]
    assert [(v.variant, v.locale) for v in campaign.languages.all()] == [("B", "fr")]
    page = client.get(change_url(campaign)).content.decode()
    assert 'value="B en français"' in page and 'id="preview-variant"' in page
    # Removing the variant (and so the test group) saves too.
    edited = ab_form(
        app,
        split_percent="100",
        test_percent="",
        **{"variants-0-DELETE": "on", "languages-0-DELETE": "on"},
    )
    assert client.post(change_url(campaign), edited).status_code == 302
    assert not campaign.variants.exists() and not campaign.languages.exists()


def test_shares_that_do_not_add_up_are_shown_and_nothing_is_saved(client, marketer):
    app = make_app()
    page = client.post(f"{CAMPAIGNS}add/", ab_form(app, split_percent="70"))
    assert page.status_code == 200
    assert "70 + 50 = 120" in page.content.decode()
    unknown = ab_form(app, **{"languages-0-variant": "C"})
    text = client.post(f"{CAMPAIGNS}add/", unknown).content.decode()
    assert "there is no variant C" in text
    assert not Campaign.objects.exists()


def test_the_campaign_page_shows_variant_results_and_the_winner(client, marketer):
    app = make_app()
    for _ in range(30):
        make_device(app, locale="fr-CA", platform="ios")
    everyone = {
        "audience_kind": "all",
        "confirm_everyone": "on",
        "tags_any": "",
        "locales": "",
        "platforms": [],
    }
    created = client.post(
        f"{CAMPAIGNS}add/", ab_form(app, test_percent="50", **everyone)
    )
    assert created.status_code == 302
    campaign = Campaign.objects.get()
    sender.campaign_send_now(campaign=campaign)
    sender.send_due(now=timezone.now())
    page = client.get(change_url(campaign)).content.decode()
    assert 'id="variant-stats"' in page and "Send B to the rest" in page
    assert "not yet significant" in page
    assert 'id="platform-stats"' in page and "<td>ios</td>" in page
    picked = client.post(f"{CAMPAIGNS}{campaign.pk}/winner/", {"variant": "B"})
    assert picked.status_code == 302
    campaign.refresh_from_db()
    assert campaign.winner == "B" and "Picked by mary" in campaign.winner_reason
    sender.send_due(now=timezone.now() + timedelta(seconds=1))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    page = client.get(change_url(campaign)).content.decode()
    assert "Winner: variant B" in page and "Send B to the rest" not in page
    assert "<td>fr</td>" in page  # the language breakdown
    again = client.post(f"{CAMPAIGNS}{campaign.pk}/winner/", {"variant": "A"})
    assert again.status_code == 302
    assert Campaign.objects.get(pk=campaign.pk).winner == "B"
    assert abtest.winners_decide_due(now=timezone.now() + timedelta(days=1)) == 0
