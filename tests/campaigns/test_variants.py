"""A/B variants, language versions and the test group's winner, with an
injected clock (campaigns.content, campaigns.abtest)."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from campaigns import abtest, content, lifecycle, sender
from campaigns.models import Campaign, CampaignMessage, CampaignSlice, CampaignStatus
from campaigns.selectors import (
    campaign_counts_by,
    campaign_platforms,
    campaign_results,
    campaign_stats,
)
from devices.delivery import receipts
from devices.models import Delivery
from tests.factories import make_app, make_device

pytestmark = pytest.mark.django_db(transaction=True)

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
B = {
    "key": "B",
    "split_percent": 50,
    "title": "B title",
    "body": "B body",
    "url": "",
    "image": "",
    "data": {"v": "b"},
}


def ab_campaign(app, *, languages=(), **fields):
    fields.setdefault("name", "Sale")
    fields.setdefault("title", "A title")
    fields.setdefault("body", "A body")
    fields.setdefault("split_percent", 50)
    return lifecycle.campaign_create(
        app=app, variants=[dict(B)], languages=list(languages), **fields
    )


def sent(campaign):
    """device id -> (variant, locale, title) of every delivery."""
    rows = Delivery.objects.filter(
        message__campaign_link__campaign=campaign
    ).values_list(
        "device_id",
        "message__campaign_link__variant",
        "message__campaign_link__locale",
        "message__title",
    )
    got = {}
    for device_id, variant, locale, title in rows:
        assert device_id not in got, "a device got two messages"
        got[device_id] = (variant, locale, title)
    return got


def test_variants_split_the_audience_by_a_hash_of_campaign_and_device():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(200)]
    campaign = ab_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    got = sent(campaign)
    assert set(got) == {d.pk for d in devices}
    shares = [("A", 50), ("B", 50)]
    for device in devices:
        bucket = content.device_bucket(campaign.pk, device.pk)
        assert got[device.pk][0] == content.variant_for(bucket, shares)
    counts = Counter(variant for variant, _l, _t in got.values())
    assert 70 < counts["A"] < 130 and counts["A"] + counts["B"] == 200
    assert {title for _v, _l, title in got.values()} == {"A title", "B title"}
    # Two contents, two messages; Campaign.message is A's.
    assert CampaignMessage.objects.filter(campaign=campaign).count() == 2
    campaign.refresh_from_db()
    assert campaign.message.title == "A title"
    assert campaign.status == CampaignStatus.SENT
    by_variant = campaign_counts_by(campaign, "variant")
    assert by_variant["A"]["targeted"] == counts["A"]
    assert by_variant["B"]["targeted"] == counts["B"]
    assert campaign_stats(campaign)["targeted"] == 200


def test_the_device_locale_picks_the_most_specific_version_by_prefix():
    app = make_app()
    fr_ca, _ = make_device(app, locale="fr-CA")
    fr_fr, _ = make_device(app, locale="fr_FR")
    quebec, _ = make_device(app, locale="fr-ca")
    german, _ = make_device(app, locale="de-DE")
    unknown, _ = make_device(app, locale="")
    campaign = lifecycle.campaign_create(
        app=app,
        name="Hello",
        title="Hello",
        body="English body",
        url="https://shop.example/en",
        languages=[
            {"variant": "A", "locale": "fr", "title": "Bonjour", "body": ""},
            {"variant": "A", "locale": "fr-CA", "title": "Allô", "body": "Québec"},
        ],
    )
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    got = sent(campaign)
    assert got[fr_ca.pk] == ("A", "fr-CA", "Allô")
    assert got[quebec.pk] == ("A", "fr-CA", "Allô")
    assert got[fr_fr.pk] == ("A", "fr", "Bonjour")
    assert got[german.pk] == ("A", "", "Hello")
    assert got[unknown.pk] == ("A", "", "Hello")
    french = Delivery.objects.get(device=fr_fr).message
    # Blank fields of a version keep the variant's own.
    assert (french.body, french.url) == ("English body", "https://shop.example/en")
    assert campaign_counts_by(campaign, "locale") == {
        "": {"targeted": 2, "sent": 0, "delivered": 0, "opened": 0},
        "fr": {"targeted": 1, "sent": 0, "delivered": 0, "opened": 0},
        "fr-CA": {"targeted": 2, "sent": 0, "delivered": 0, "opened": 0},
    }
    rows = {row[0]: row for row in campaign_results(campaign)}
    assert rows[fr_ca.pk][8:10] == ("A", "fr-CA")  # variant, language


def open_all(campaign, variant, *, opened=True):
    """Every device of `variant` acks (and opens) its push."""
    rows = list(
        Delivery.objects.filter(
            message__campaign_link__campaign=campaign,
            message__campaign_link__variant=variant,
        )
    )
    receipts.receipts_record(
        receipts.Receipts(
            sent=[],
            delivered=[row.pk for row in rows],
            opened=[(row.device_id, row.seq, str(row.message_id)) for row in rows]
            if opened
            else [],
        )
    )


def test_test_group_first_then_the_automatic_winner_to_the_rest():
    app = make_app()
    devices = [make_device(app, locale="fr-BE")[0] for _ in range(120)]
    campaign = ab_campaign(
        app,
        test_percent=25,
        winner_window_seconds=7200,
        languages=[{"variant": "B", "locale": "fr", "title": "B en français"}],
    )
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    tested = sent(campaign)
    expected = {
        d.pk
        for d in devices
        if content.in_test_group(content.device_bucket(campaign.pk, d.pk), 25)
    }
    assert set(tested) == expected and 10 < len(expected) < 50
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING  # waiting for the winner
    open_all(campaign, "A", opened=False)
    open_all(campaign, "B")
    assert abtest.winners_decide_due(now=NOON + timedelta(minutes=119)) == 0
    assert abtest.winners_decide_due(now=NOON + timedelta(hours=2)) == 1
    campaign.refresh_from_db()
    assert campaign.winner == "B"
    assert campaign.winner_reason.startswith(
        "Chosen automatically after 2 hours: variant B, open rate 100.0%, "
        "+100.0 points against A; "
    )
    results = {r.key: r for r in abtest.variant_results(campaign)}
    assert results["A"].opened_rate == 0.0 and results["B"].opened_rate == 1.0
    later = NOON + timedelta(hours=2)
    sender.send_due(now=later)
    got = sent(campaign)
    assert set(got) == {d.pk for d in devices}  # everyone, once
    for device_id, (variant, locale, title) in got.items():
        if device_id in tested:
            assert (variant, locale, title) == tested[device_id]
        else:
            assert (variant, locale, title) == ("B", "fr", "B en français")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    # The rest's deliveries live a full TTL from the winner's send.
    rest = Delivery.objects.filter(device_id__in=set(got) - set(tested)).first()
    assert rest.expires_at == later + timedelta(seconds=campaign.ttl_seconds)


def test_the_marketer_picks_the_winner_before_the_window_ends():
    app = make_app()
    devices = [make_device(app)[0] for _ in range(40)]
    campaign = ab_campaign(app, test_percent=50)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    with pytest.raises(ValidationError):
        abtest.winner_pick(campaign=campaign, key="C", now=NOON)
    abtest.winner_pick(campaign=campaign, key="A", by="mary", now=NOON)
    with pytest.raises(lifecycle.CampaignStateError):
        abtest.winner_pick(campaign=campaign, key="B", now=NOON)
    campaign.refresh_from_db()
    assert campaign.winner == "A" and "Picked by mary" in campaign.winner_reason
    sender.send_due(now=NOON)
    got = sent(campaign)
    assert set(got) == {d.pk for d in devices}
    outside = [
        d.pk
        for d in devices
        if not content.in_test_group(content.device_bucket(campaign.pk, d.pk), 50)
    ]
    assert outside and all(got[i][0] == "A" for i in outside)
    # Later, the scheduler's automatic step finds nothing left to decide.
    assert abtest.winners_decide_due(now=NOON + timedelta(days=1)) == 0


def test_a_crash_between_chunks_neither_misses_nor_repeats_a_device():
    app = make_app()
    devices = [make_device(app, locale="fr")[0] for _ in range(25)]
    campaign = ab_campaign(
        app,
        test_percent=40,
        languages=[{"variant": "A", "locale": "fr", "title": "A fr"}],
    )
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)

    def crash_mid_chunk(now=NOON):
        """A scheduler dies after writing a chunk, before its commit."""
        with pytest.raises(RuntimeError), transaction.atomic():
            sender.send_next_chunk(now=now, chunk_size=4)
            raise RuntimeError("killed")

    steps = 0
    while True:
        crash_mid_chunk()
        if sender.send_next_chunk(now=NOON, chunk_size=4) is None:
            break
        steps += 1
        if steps == 5:
            # A chunk written again: the cursor moved back (skip_existing).
            CampaignSlice.objects.filter(campaign=campaign).update(cursor="")
    later = NOON + timedelta(hours=3)
    assert abtest.winners_decide_due(now=later) == 1
    while True:
        crash_mid_chunk(later)
        if sender.send_next_chunk(now=later, chunk_size=4) is None:
            break
    got = sent(campaign)  # asserts no device got two
    assert set(got) == {d.pk for d in devices}
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT


def test_cancel_withdraws_every_variant():
    app = make_app()
    for _ in range(20):
        make_device(app)
    campaign = ab_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    lifecycle.campaign_cancel(campaign=campaign, now=NOON)
    statuses = set(
        Delivery.objects.filter(message__campaign_link__campaign=campaign).values_list(
            "status", flat=True
        )
    )
    assert statuses == {"cancelled"}
    assert campaign_stats(campaign)["cancelled"] == 20


def test_platform_breakdown_counts_the_rows_on_demand():
    app = make_app()
    for platform in ("android", "android", "ios", "web"):
        make_device(app, platform=platform)
    campaign = ab_campaign(app)
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    platforms = campaign_platforms(campaign)
    assert {k: v["targeted"] for k, v in platforms.items()} == {
        "android": 2,
        "ios": 1,
        "web": 1,
    }


def test_shares_must_add_up_and_a_test_group_needs_variants():
    app = make_app()
    with pytest.raises(ValidationError) as error:
        lifecycle.campaign_create(
            app=app,
            name="x",
            title="t",
            split_percent=60,
            variants=[{**B, "split_percent": 50}],
        )
    assert "60 + 50 = 110" in str(error.value.message_dict["split_percent"])
    with pytest.raises(ValidationError) as error:
        lifecycle.campaign_create(app=app, name="x", title="t", test_percent=10)
    assert "test_percent" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        lifecycle.campaign_create(
            app=app,
            name="x",
            title="t",
            split_percent=50,
            variants=[{**B, "key": "C"}],
            languages=[{"variant": "D", "locale": "fr", "title": "x"}],
        )
    assert set(error.value.message_dict) == {"variants", "languages"}


def test_duplicate_copies_variants_and_languages():
    app = make_app()
    campaign = ab_campaign(
        app, languages=[{"variant": "B", "locale": "de", "title": "B auf Deutsch"}]
    )
    copy = lifecycle.campaign_duplicate(campaign=campaign)
    assert [v.title for v in copy.variants.all()] == ["B title"]
    assert [(v.variant, v.locale) for v in copy.languages.all()] == [("B", "de")]
    assert copy.split_percent == 50


def test_z_test_and_its_honest_verdicts():
    # 20/100 against 35/100: z = 2.38, past 1.96.
    z = abtest.two_proportion_z(20, 100, 35, 100)
    assert z == pytest.approx(2.376, abs=0.01)
    assert abtest._verdict("B", (20, 100), (35, 100), z) == (
        True,
        "significant at 95%",
    )
    assert abtest._verdict("B", (20, 100), (25, 100), 0.85)[0] is False
    # 1 of 3 against 3 of 3: a big difference, far too few results.
    small = abtest.two_proportion_z(1, 3, 3, 3)
    assert abtest._verdict("B", (1, 3), (3, 3), small) == (
        False,
        "not yet significant (too few results to tell)",
    )
    assert abtest.two_proportion_z(0, 0, 1, 2) is None


def test_a_variant_with_placeholders_is_rendered_per_device_the_other_shared():
    app = make_app()
    for index in range(30):
        make_device(app, alias=f"user{index % 3}")
    campaign = ab_campaign(app, title="Hello all")
    campaign.variants.update(title="Hi {{ alias|default:'there' }}")
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    got = sent(campaign)
    titles = Counter(title for variant, _l, title in got.values() if variant == "B")
    assert set(titles) <= {"Hi user0", "Hi user1", "Hi user2"} and titles
    a_titles = {title for variant, _l, title in got.values() if variant == "A"}
    assert a_titles == {"Hello all"}
    # One message for A, one per distinct rendering of B, plus A's base.
    links = CampaignMessage.objects.filter(campaign=campaign, variant="B")
    assert links.count() == len(titles)


def test_stats_read_all_messages_at_once(django_assert_max_num_queries):
    app = make_app()
    for index in range(40):
        make_device(app, alias=f"user{index}")
    campaign = ab_campaign(app)
    campaign.variants.update(title="Hi {{ alias }}")  # a message per B device
    lifecycle.campaign_schedule_now(campaign=campaign, now=NOON)
    sender.send_due(now=NOON)
    assert CampaignMessage.objects.filter(campaign=campaign).count() > 10
    campaign_stats(campaign)  # backfills nothing but touches every message
    with django_assert_max_num_queries(6):
        stats = campaign_stats(campaign)
    assert stats["targeted"] == 40 and stats["pending"] == 40
