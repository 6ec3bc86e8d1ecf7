"""The rules of a campaign's variants and language versions, and their
writing: shared by the admin's composer and the REST API.

Variant A is the campaign's own content with split_percent of the
audience; variants B to E are rows with their own content and share; the
shares add up to 100. A language version belongs to one variant and one
locale; its blank fields keep the variant's (campaigns.content).
"""

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns import personalize
from campaigns.content import VARIANT_KEYS, locale_key
from campaigns.models import Campaign, CampaignLanguage, CampaignVariant
from devices.delivery import messages
from devices.models import Message

VARIANT_FIELDS = ("key", "split_percent", "title", "body", "url", "image", "data")
LANGUAGE_FIELDS = ("variant", "locale", "title", "body", "url", "image")
# A locale as devices report it: "fr", "fr-CA", "zh-Hant-TW", "pt_BR".
MAX_LOCALE = 16
MIN_WINDOW_SECONDS = 60


def stored_variants(campaign: Campaign) -> list[dict[str, Any]]:
    if campaign.pk is None:
        return []
    return [
        {name: getattr(row, name) for name in VARIANT_FIELDS}
        for row in campaign.variants.all()
    ]


def stored_languages(campaign: Campaign) -> list[dict[str, Any]]:
    if campaign.pk is None:
        return []
    return [
        {name: getattr(row, name) for name in LANGUAGE_FIELDS}
        for row in campaign.languages.all()
    ]


def variants_validate(
    campaign: Campaign,
    variants: list[dict[str, Any]],
    languages: list[dict[str, Any]],
) -> None:
    """Shares, test group, keys and each content's size; errors by field."""
    errors: dict[str, list[str]] = {}
    keys = [v["key"] for v in variants]
    if len(variants) > len(VARIANT_KEYS) - 1:
        errors["variants"] = ["At most 5 variants (A to E)."]
    elif sorted(keys) != list(VARIANT_KEYS[1 : len(keys) + 1]):
        errors["variants"] = [
            "Variants after A are named B, C, D, E, in order, each once."
        ]
    errors.update(_split_errors(campaign, variants))
    known = {"A", *keys}
    seen = set()
    for version in languages:
        where = f"{version['variant']} {version['locale']}"
        locale = locale_key(version["locale"])
        if version["variant"] not in known:
            errors.setdefault("languages", []).append(
                f"{where}: there is no variant {version['variant']}."
            )
        if not locale or len(locale) > MAX_LOCALE or " " in locale:
            errors.setdefault("languages", []).append(
                f"{where}: a locale such as fr or fr-CA."
            )
        if (version["variant"], locale) in seen:
            errors.setdefault("languages", []).append(f"{where}: given twice.")
        seen.add((version["variant"], locale))
    for variant in variants:
        where = f"variant {variant['key']}"
        _content_errors(campaign, variant, where, "variants", errors)
    base = {v["key"]: v for v in variants}
    for version in languages:
        variant = base.get(version["variant"], _own(campaign))
        merged = {**variant, **{k: v for k, v in version.items() if v}}
        where = f"{version['variant']} {version['locale']}"
        _content_errors(campaign, merged, where, "languages", errors)
    if errors:
        raise ValidationError(errors)


def variants_write(
    campaign: Campaign,
    variants: list[dict[str, Any]],
    languages: list[dict[str, Any]],
) -> None:
    """Replace the campaign's rows (the caller validated and holds its lock)."""
    campaign.variants.all().delete()
    campaign.languages.all().delete()
    CampaignVariant.objects.bulk_create(
        CampaignVariant(campaign=campaign, **{n: v[n] for n in VARIANT_FIELDS})
        for v in variants
    )
    CampaignLanguage.objects.bulk_create(
        CampaignLanguage(
            campaign=campaign,
            **{n: version.get(n, "") for n in LANGUAGE_FIELDS},
        )
        for version in languages
    )


def variants_copy(source: Campaign, target: Campaign) -> None:
    variants_write(target, stored_variants(source), stored_languages(source))


def _split_errors(
    campaign: Campaign, variants: list[dict[str, Any]]
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    shares = [campaign.split_percent, *(v["split_percent"] for v in variants)]
    if not variants:
        if campaign.split_percent != 100:
            errors["split_percent"] = ["Without other variants, A gets 100%."]
        if campaign.test_percent:
            errors["test_percent"] = ["A test group needs at least two variants."]
    elif sum(shares) != 100 or min(shares) < 1:
        text = " + ".join(f"{s}" for s in shares)
        errors["split_percent"] = [
            f"The variants' shares must each be at least 1% and add up to "
            f"100% ({text} = {sum(shares)})."
        ]
    if campaign.test_percent is not None and not 1 <= campaign.test_percent <= 99:
        errors["test_percent"] = ["Between 1 and 99%, or empty for no test group."]
    if campaign.winner_window_seconds < MIN_WINDOW_SECONDS:
        errors["winner_window_seconds"] = ["At least a minute."]
    return errors


def _own(campaign: Campaign) -> dict[str, Any]:
    return {
        "title": campaign.title,
        "body": campaign.body,
        "url": campaign.url,
        "image": campaign.image,
        "data": campaign.data,
    }


def _content_errors(
    campaign: Campaign,
    fields: dict[str, Any],
    where: str,
    key: str,
    errors: dict[str, list[str]],
) -> None:
    now = timezone.now()
    message = Message(
        app_id=campaign.app_id,
        title=fields.get("title") or "",
        body=fields.get("body") or "",
        url=fields.get("url") or "",
        image=fields.get("image") or "",
        data=fields.get("data") if fields.get("data") is not None else {},
        priority=campaign.priority,
        collapse_key=campaign.collapse_key,
        wake_mode=campaign.wake_mode,
        created_at=now,
        expires_at=now + timedelta(seconds=campaign.ttl_seconds),
    )
    try:
        messages.message_validate(message)
        # Placeholders parse and their longest rendering fits.
        personalize.content_validate(personalize.content_of(message))
    except ValidationError as exc:
        for text in exc.messages:
            errors.setdefault(key, []).append(f"{where}: {text}")
