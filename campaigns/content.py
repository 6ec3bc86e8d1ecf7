"""What each device of a campaign is sent, and the message that carries it.

A campaign's content is one or more variants (A is the campaign's own
fields, B to E are CampaignVariant rows), each with language versions. For
every device of a chunk the sender (campaigns.sender) asks here for:

1. its variant: a hash of the campaign id and the device id picks a bucket
   out of BUCKETS, so a chunk written again, a resumed slice or the winner
   phase of an A/B test assigns every device exactly as before. With a test
   group, the first test_percent of the buckets are the test group (split
   among the variants); the rest get the winner once there is one, and
   nothing before;
2. its language: the most specific version whose locale is a prefix of the
   device's ("fr" matches "fr-CA", "fr-CA" is preferred when both exist, as
   audiences match locales); none matching: the variant's own content;
3. its content: campaigns.personalize.render of those fields for the device.

Devices whose final content is equal share one Message, made the first
time a device needs it and recorded as a CampaignMessage (campaign, canary
wave, variant, locale, content hash): a later chunk, slice or phase with the
same content reuses it, so stats per wave, variant and language add up.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Exists

from campaigns import personalize
from campaigns.models import (
    Campaign,
    CampaignLanguage,
    CampaignMessage,
    CampaignVariant,
)
from devices.models import Delivery, Device, Message

BUCKETS = 10_000
VARIANT_KEYS = "ABCDE"
LANGUAGE_FIELDS = ("title", "body", "url", "image")


@dataclass(frozen=True)
class Variant:
    key: str
    split_percent: int
    fields: dict[str, Any]
    # Normalised locale ("fr-ca") -> (locale as written, its own fields).
    languages: dict[str, tuple[str, dict[str, Any]]]

    def content(self, locale: str) -> dict[str, Any]:
        """The fields of the language version `locale` ("": the fallback)."""
        fields = dict(self.fields)
        if locale:
            own = self.languages[locale_key(locale)][1]
            fields.update({name: own[name] for name in LANGUAGE_FIELDS if own[name]})
        return fields


@dataclass
class Portion:
    """The devices of a chunk that are sent one content."""

    variant: str
    locale: str
    content_hash: str
    fields: dict[str, Any]
    device_ids: list[UUID] = field(default_factory=list)
    # A canary rollout's wave (campaigns.canary): a message per wave, so
    # each wave's counts are its messages' counters.
    wave: int = 0


def locale_key(locale: str) -> str:
    return locale.strip().replace("_", "-").lower()


def campaign_variants(campaign: Campaign) -> dict[str, Variant]:
    """A (the campaign's own content) and its B-E rows, with languages."""
    languages: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
    for version in campaign.languages.all():
        own = {name: getattr(version, name) for name in LANGUAGE_FIELDS}
        languages.setdefault(version.variant, {})[locale_key(version.locale)] = (
            version.locale,
            own,
        )
    rows = [
        (campaign.split_percent, "A", campaign),
        *((row.split_percent, row.key, row) for row in campaign.variants.all()),
    ]
    return {
        key: Variant(
            key,
            share,
            {name: getattr(row, name) for name in personalize.CONTENT_FIELDS},
            languages.get(key, {}),
        )
        for share, key, row in rows
    }


def device_bucket(campaign_id: int, device_id: Any) -> int:
    """The device's fixed place in 0 .. BUCKETS-1 for this campaign."""
    digest = hashlib.sha256(f"{campaign_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def wave_of(bucket: int, percents: list[int]) -> int:
    """The canary wave (0-based) of a device in `bucket`, for cumulative
    `percents` of the audience (campaigns.canary)."""
    for index, percent in enumerate(percents):
        if bucket < percent * BUCKETS // 100:
            return index
    return len(percents) - 1


def in_test_group(bucket: int, test_percent: int | None) -> bool:
    return bool(test_percent) and bucket < _test_buckets(test_percent)


def variant_for(
    bucket: int,
    shares: list[tuple[str, int]],
    *,
    test_percent: int | None = None,
    winner: str = "",
) -> str | None:
    """The variant a device in `bucket` gets, or None: not now (outside the
    test group, before the winner is known)."""
    if test_percent:
        size = _test_buckets(test_percent)
        if bucket >= size:
            return winner or None
        position = bucket * 100 / size
    else:
        position = bucket * 100 / BUCKETS
    cumulative = 0
    for key, share in shares:
        cumulative += share
        if position < cumulative:
            return key
    return shares[-1][0]


def language_for(device_locale: str, available: dict[str, Any]) -> str:
    """The normalised locale of the most specific version matching the
    device's locale by prefix, or "" for the fallback."""
    parts = locale_key(device_locale).split("-")
    for length in range(len(parts), 0, -1):
        candidate = "-".join(parts[:length])
        if candidate and candidate in available:
            return candidate
    return ""


def content_hash(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def devices_due(campaign: Campaign, devices: list[Device]) -> list[Device]:
    """The chunk's devices an A/B test sends to now: before the winner, the
    test group only; after, everyone who has no message of the campaign yet
    (the test group's devices are seen again and left out, even if their
    locale changed meanwhile)."""
    if not campaign.test_percent:
        return devices
    if not campaign.winner:
        return [
            device
            for device in devices
            if in_test_group(
                device_bucket(campaign.pk, device.pk), campaign.test_percent
            )
        ]
    served = set(
        Delivery.objects.filter(
            device_id__in=[device.pk for device in devices],
            message_id__in=CampaignMessage.objects.filter(
                campaign_id=campaign.pk
            ).values("message_id"),
        ).values_list("device_id", flat=True)
    )
    return [device for device in devices if device.pk not in served]


def chunk_portions(campaign: Campaign, devices: list[Device]) -> list[Portion]:
    """The chunk's devices grouped by what each is sent (skipped: outside
    the test group while the winner is not known)."""
    variants = campaign_variants(campaign)
    shares = [(v.key, v.split_percent) for v in variants.values()]
    plain = len(variants) == 1 and not campaign.test_percent
    # Per variant and language: its content, and its hash when it has no
    # placeholders (render leaves it as it is: no per-device work).
    fixed: dict[tuple[str, str], tuple[dict[str, Any], str | None]] = {}
    portions: dict[tuple[int, str, str, str], Portion] = {}
    waves = list(campaign.wave_percents or [])
    for device in devices:
        bucket = device_bucket(campaign.pk, device.pk)
        wave = wave_of(bucket, waves) if waves else 0
        key = (
            "A"
            if plain
            else variant_for(
                bucket,
                shares,
                test_percent=campaign.test_percent,
                winner=campaign.winner,
            )
        )
        if key is None:
            continue
        variant = variants[key]
        normalised = language_for(device.locale, variant.languages)
        locale = variant.languages[normalised][0] if normalised else ""
        if (key, locale) not in fixed:
            own = variant.content(locale)
            templated = personalize.has_placeholders(own)
            fixed[key, locale] = (own, None if templated else content_hash(own))
        fields, digest = fixed[key, locale]
        if digest is None:
            fields = personalize.render(fields, device)
            digest = content_hash(fields)
        portion = portions.get((wave, key, locale, digest))
        if portion is None:
            portion = portions[wave, key, locale, digest] = Portion(
                key, locale, digest, fields, wave=wave
            )
        portion.device_ids.append(device.pk)
    return list(portions.values())


def chunk_plans(
    campaign: Campaign,
    devices: list[Device],
    *,
    expires_at: datetime,
    now: datetime,
) -> list[tuple[Message, list[UUID]]]:
    """(message, device ids) pairs for deliveries_write, in one transaction
    with it."""
    portions = [p for p in chunk_portions(campaign, devices) if p.device_ids]
    found = _messages_get_or_create(campaign, portions, expires_at, now)
    return [(found[_key(p)], p.device_ids) for p in portions]


def sends_one_content(campaign: Campaign) -> bool:
    """Is every device sent variant A's own content as written (no A/B
    test, no variants, no language versions, no placeholders)? Then a chunk
    needs no per-device work: base_message is everyone's."""
    if campaign.test_percent:
        return False
    fields = {name: getattr(campaign, name) for name in personalize.CONTENT_FIELDS}
    if personalize.has_placeholders(fields):
        return False
    # One query for both: a chunk's statements are few enough to count.
    more = Exists(CampaignVariant.objects.filter(campaign_id=campaign.pk)) | Exists(
        CampaignLanguage.objects.filter(campaign_id=campaign.pk)
    )
    return not Campaign.objects.filter(more, pk=campaign.pk).exists()


def base_message(campaign: Campaign, *, expires_at: datetime, now: datetime) -> Message:
    """Variant A's own content as written (Campaign.message): the one
    message of a plain campaign whose devices render it unchanged."""
    fields = {name: getattr(campaign, name) for name in personalize.CONTENT_FIELDS}
    portion = Portion("A", "", content_hash(fields), fields)
    return _message_get_or_create(campaign, portion, expires_at, now)


def _key(portion: Portion) -> tuple[int, str, str, str]:
    return (portion.wave, portion.variant, portion.locale, portion.content_hash)


def _messages_get_or_create(
    campaign: Campaign, portions: list[Portion], expires_at: datetime, now: datetime
) -> dict[tuple[int, str, str, str], Message]:
    """The message of each portion's content, the missing ones made in bulk.

    Personalised content can make a message per device: made one by one
    (a lookup, a savepoint, two inserts each) a chunk of 5,000 distinct
    first names took a minute; in bulk it is four statements. A concurrent
    scheduler making the same content first wins (the unique constraint,
    ignore_conflicts); the messages this one made for it are deleted.
    """
    found = _links(campaign, portions)
    missing = [p for p in portions if _key(p) not in found]
    if missing:
        made = {
            _key(p): Message(
                app_id=campaign.app_id,
                priority=campaign.priority,
                collapse_key=campaign.collapse_key,
                created_at=now,
                expires_at=expires_at,
                **{name: p.fields[name] for name in personalize.CONTENT_FIELDS},
            )
            for p in missing
        }
        Message.objects.bulk_create(made.values())
        CampaignMessage.objects.bulk_create(
            [
                CampaignMessage(
                    campaign_id=campaign.pk,
                    message=made[key],
                    wave=key[0],
                    variant=key[1],
                    locale=key[2],
                    content_hash=key[3],
                )
                for key in made
            ],
            ignore_conflicts=True,
        )
        found = _links(campaign, portions)
        lost = [m.pk for key, m in made.items() if found[key].pk != m.pk]
        if lost:
            Message.objects.filter(pk__in=lost).delete()
        # Campaign.message: the first message (a plain campaign's only).
        Campaign.objects.filter(pk=campaign.pk, message__isnull=True).update(
            message=found[_key(missing[0])]
        )
    stale = [m.pk for m in found.values() if m.expires_at < expires_at]
    if stale:
        # Reused by a later slice or phase: it lives as long as they do.
        Message.objects.filter(pk__in=stale).update(expires_at=expires_at)
        for message in found.values():
            message.expires_at = max(message.expires_at, expires_at)
    return found


def _links(
    campaign: Campaign, portions: list[Portion]
) -> dict[tuple[int, str, str, str], Message]:
    links = CampaignMessage.objects.filter(
        campaign_id=campaign.pk,
        content_hash__in={p.content_hash for p in portions},
    ).select_related("message")
    return {
        (link.wave, link.variant, link.locale, link.content_hash): link.message
        for link in links
    }


def _message_get_or_create(
    campaign: Campaign, portion: Portion, expires_at: datetime, now: datetime
) -> Message:
    link = CampaignMessage.objects.filter(
        campaign_id=campaign.pk,
        wave=portion.wave,
        variant=portion.variant,
        locale=portion.locale,
        content_hash=portion.content_hash,
    ).select_related("message")
    found = link.first()
    if found is None:
        try:
            # A savepoint: another scheduler's slice of this campaign may
            # make the same content at the same time (the unique constraint
            # decides, and the loser reads the winner's).
            with transaction.atomic():
                message = Message.objects.create(
                    app_id=campaign.app_id,
                    priority=campaign.priority,
                    collapse_key=campaign.collapse_key,
                    wake_mode=campaign.wake_mode,
                    created_at=now,
                    expires_at=expires_at,
                    **{
                        name: portion.fields[name]
                        for name in personalize.CONTENT_FIELDS
                    },
                )
                CampaignMessage.objects.create(
                    campaign_id=campaign.pk,
                    message=message,
                    wave=portion.wave,
                    variant=portion.variant,
                    locale=portion.locale,
                    content_hash=portion.content_hash,
                )
        except IntegrityError:
            found = link.get()
        else:
            # Campaign.message: the first message (a plain campaign's only).
            Campaign.objects.filter(pk=campaign.pk, message__isnull=True).update(
                message=message
            )
            return message
    message = found.message
    if message.expires_at < expires_at:
        # Reused by a later slice or phase: it lives as long as they do.
        message.expires_at = expires_at
        message.save(update_fields=["expires_at"])
    return message


def _test_buckets(test_percent: int) -> int:
    return BUCKETS * test_percent // 100
