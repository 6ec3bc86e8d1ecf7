"""Canary rollouts: a campaign sent in waves, each judged before the next.

``wave_percents`` lists cumulative shares of the audience (``[1, 10, 100]``:
1%, then up to 10%, then everyone). A device's wave comes from the same
bucket as its A/B variant (campaigns.content.device_bucket: a hash of the
campaign id and the device id), so a chunk written again or a resumed
slice assigns every device exactly as before. The sender sends only the
devices of the waves released (up to ``Campaign.wave``) not sent yet; when
its slices are done it records ``wave_sent_at`` and the campaign waits.

After ``wave_hold_seconds`` the scheduler's ``waves_judge_due`` (with its
injected clock) judges the wave on its own deliveries: delivery rate
(delivered / sent), open rate (opened / delivered), error rate (expired
or dropped / sent), opt-out rate (devices unregistered after the push was
written to them / sent), close rate (devices whose socket the server closed
4429 or 4400 after the push was written, Device.bad_close_at / sent) and an
app event's rate against the campaign's thresholds. Within them, the next
wave is released (every slice starts over; earlier waves' devices are left
out by their bucket). Crossing one pauses the campaign or aborts it
(campaign_cancel: the rest, and whatever of the wave is undelivered, is
cancelled; with ``canary_recall_on_abort`` what the waves delivered is
recalled too, campaigns.recall), with the reason in words on the campaign
page. A marketer's cancel of such a campaign recalls the same way.

By hand: pause, resume (after an automatic pause, resuming overrides the
verdict and releases the next wave) and promote (release the next wave
without waiting for the hold). docs/architecture.md has the design.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from campaigns.content import device_bucket, wave_of
from campaigns.models import Campaign, CampaignMessage, CampaignSlice, CampaignStatus
from campaigns.selectors import campaign_counts_by
from devices.models import Delivery, Device, MessageEvent
from devices.registry.message_events import EVENT_NAME

MAX_WAVES = 10
CANARY_FIELDS = [
    "wave_percents",
    "wave_hold_seconds",
    "canary_min_delivery_rate",
    "canary_min_open_rate",
    "canary_max_error_rate",
    "canary_max_optout_rate",
    "canary_max_close_rate",
    "canary_event_name",
    "canary_max_event_rate",
    "canary_action",
    "canary_recall_on_abort",
]
# The counters a wave's results read (devices.delivery.counters); errors
# are expired + dropped.
WAVE_COLUMNS = ("targeted", "delivered", "opened", "expired", "dropped")


@dataclass(frozen=True)
class WaveResult:
    index: int
    percent: int  # cumulative share of the audience at its end
    released: bool
    sent: int
    delivered: int
    opened: int
    errors: int
    # Devices unregistered (revoked) after the push was written to them.
    opted_out: int
    # Devices that reported the campaign's app event about their push.
    events: int = 0
    # Devices whose socket the server closed 4429 (too slow) or 4400
    # (protocol errors) after the push was written to them.
    closed: int = 0

    @property
    def delivery_rate(self) -> float | None:
        return self.delivered / self.sent if self.sent else None

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.delivered if self.delivered else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.sent if self.sent else None

    @property
    def optout_rate(self) -> float | None:
        return self.opted_out / self.sent if self.sent else None

    @property
    def event_rate(self) -> float | None:
        return self.events / self.sent if self.sent else None

    @property
    def close_rate(self) -> float | None:
        return self.closed / self.sent if self.sent else None


def waves_validate(campaign: Campaign) -> dict[str, list[str]]:
    """Errors per field of the waves and thresholds (empty: fine)."""
    waves = campaign.wave_percents or []
    if not waves:
        return {}
    if not isinstance(waves, list) or not all(
        isinstance(w, int) and not isinstance(w, bool) for w in waves
    ):
        return {"wave_percents": ["A list of whole percentages, e.g. [1, 10, 100]."]}
    if len(waves) < 2 or len(waves) > MAX_WAVES:
        return {"wave_percents": [f"Between 2 and {MAX_WAVES} waves."]}
    if any(b <= a for a, b in zip(waves, waves[1:], strict=False)) or waves[0] < 1:
        return {"wave_percents": ["Each wave must be larger than the one before."]}
    if waves[-1] != 100:
        return {"wave_percents": ["The last wave must be 100 (everyone)."]}
    errors: dict[str, list[str]] = {}
    if campaign.test_percent:
        errors["wave_percents"] = [
            "A campaign with an A/B test group cannot also go out in waves."
        ]
    for name in (
        "canary_min_delivery_rate",
        "canary_min_open_rate",
        "canary_max_error_rate",
        "canary_max_optout_rate",
        "canary_max_close_rate",
        "canary_max_event_rate",
    ):
        value = getattr(campaign, name)
        if value is not None and value > 100:
            errors[name] = ["A percentage from 0 to 100."]
    if campaign.canary_event_name and not EVENT_NAME.match(campaign.canary_event_name):
        errors["canary_event_name"] = [
            "Lowercase letters, digits, _ . - (1 to 40), e.g. crash."
        ]
    return errors


def has_waves(campaign: Campaign) -> bool:
    return bool(campaign.wave_percents)


def devices_in_wave(campaign: Campaign, devices: list[Any]) -> list[Any]:
    """The chunk's devices of the waves released so far that have no
    message of the campaign yet (earlier waves' devices were sent theirs,
    even if a wave was promoted before its slices were done; later waves
    wait)."""
    if not has_waves(campaign):
        return devices
    percents = list(campaign.wave_percents)
    mine = [
        device
        for device in devices
        if wave_of(device_bucket(campaign.pk, device.pk), percents) <= campaign.wave
    ]
    if campaign.wave == 0 or not mine:
        return mine
    served = set(
        Delivery.objects.filter(
            device_id__in=[device.pk for device in mine],
            message_id__in=CampaignMessage.objects.filter(
                campaign_id=campaign.pk
            ).values("message_id"),
        ).values_list("device_id", flat=True)
    )
    return [device for device in mine if device.pk not in served]


def awaits_wave(campaign: Campaign) -> bool:
    """More waves to come: the campaign is not finished when slices are."""
    return has_waves(campaign) and campaign.wave < len(campaign.wave_percents) - 1


def wave_sent(*, campaign: Campaign, now: datetime) -> None:
    """The released wave's slices are done: its hold starts now."""
    Campaign.objects.filter(pk=campaign.pk, wave_sent_at__isnull=True).update(
        wave_sent_at=now
    )


def wave_results(campaign: Campaign) -> list[WaveResult]:
    """Each wave's counts, read without touching its delivery rows one by
    one: the campaign has a message per wave (campaigns.content), so sent,
    delivered, opened and errors are its messages' counters, summed per
    wave in one grouped read; opt-outs and 4429/4400 closes start from the
    few devices revoked or closed since the campaign started (an index
    each); app events are one grouped count."""
    percents = list(campaign.wave_percents or [])
    if not percents:
        return []
    counted = campaign_counts_by(campaign, "wave", WAVE_COLUMNS)
    since = campaign.started_at or campaign.created_at
    opted_out = _devices_per_wave(campaign, "revoked_at", since)
    closed = _devices_per_wave(campaign, "bad_close_at", since)
    events: dict[int, int] = {}
    if campaign.canary_event_name:
        events = _per_wave(
            MessageEvent.objects.filter(
                message__campaign_link__campaign_id=campaign.pk,
                name=campaign.canary_event_name,
            ),
            "message__campaign_link__wave",
        )
    results = []
    for index, percent in enumerate(percents):
        counts = counted.get(index, dict.fromkeys(WAVE_COLUMNS, 0))
        results.append(
            WaveResult(
                index,
                percent,
                index <= campaign.wave,
                sent=counts["targeted"],
                delivered=counts["delivered"],
                opened=counts["opened"],
                errors=counts["expired"] + counts["dropped"],
                opted_out=opted_out.get(index, 0),
                events=events.get(index, 0),
                closed=closed.get(index, 0),
            )
        )
    return results


def _devices_per_wave(campaign: Campaign, moment: str, since: Any) -> dict[int, int]:
    """Per wave, the devices whose `moment` (revoked_at, bad_close_at) came
    after the campaign's push was written to them. Read from those devices
    (an index range since the start) into their deliveries: a plain join
    of the campaign's deliveries to them scanned all of a million-device
    campaign's rows (1.1 s, against 0.4 s with 1% of its devices revoked)."""
    since_start = Device.objects.filter(
        **{f"{moment}__gte": since}, app_id=campaign.app_id
    )
    return _per_wave(
        Delivery.objects.filter(
            device_id__in=since_start.values("pk"),
            message__campaign_link__campaign_id=campaign.pk,
            **{f"device__{moment}__gte": F("created_at")},
        ),
        "message__campaign_link__wave",
    )


def _per_wave(rows: Any, wave: str) -> dict[int, int]:
    grouped = rows.values(wave).annotate(n=Count("pk")).order_by()
    return {row[wave]: row["n"] for row in grouped}


def wave_breaches(campaign: Campaign, result: WaveResult) -> list[str]:
    """The thresholds the wave crossed, in words ("delivery rate 42% < 90%")."""
    breaches = []
    checks = [
        ("delivery rate", result.delivery_rate, campaign.canary_min_delivery_rate, 1),
        ("open rate", result.open_rate, campaign.canary_min_open_rate, 1),
        ("error rate", result.error_rate, campaign.canary_max_error_rate, -1),
        ("opt-out rate", result.optout_rate, campaign.canary_max_optout_rate, -1),
        ("4429/4400 close rate", result.close_rate, campaign.canary_max_close_rate, -1),
        (
            f"{campaign.canary_event_name or 'app event'} rate",
            result.event_rate,
            campaign.canary_max_event_rate if campaign.canary_event_name else None,
            -1,
        ),
    ]
    for label, rate, limit, sign in checks:
        if rate is None or limit is None:
            continue
        value = rate * 100
        if sign > 0 and value < limit:
            breaches.append(f"{label} {value:.0f}% < {limit}%")
        if sign < 0 and value > limit:
            breaches.append(f"{label} {value:.0f}% > {limit}%")
    return breaches


def waves_judge_due(*, now: datetime) -> int:
    """Judge every released wave whose hold has passed; the count judged."""
    waiting = Campaign.objects.filter(
        status=CampaignStatus.SENDING, wave_sent_at__isnull=False
    ).exclude(wave_percents=[])
    judged = 0
    for campaign in waiting:
        assert campaign.wave_sent_at is not None
        hold = timedelta(seconds=campaign.wave_hold_seconds)
        if not awaits_wave(campaign) or campaign.wave_sent_at + hold > now:
            continue
        try:
            wave_judge(campaign=campaign, now=now)
        except ValidationError:
            continue  # paused, cancelled or promoted meanwhile
        judged += 1
    return judged


def wave_judge(*, campaign: Campaign, now: datetime) -> Campaign:
    """Release the next wave, or pause / abort with the reason."""
    result = wave_results(campaign)[campaign.wave]
    breaches = wave_breaches(campaign, result)
    if not breaches:
        return wave_promote(campaign=campaign, now=now, reason="")
    action = "paused" if campaign.canary_action == "pause" else "aborted"
    reason = (
        f"Wave {campaign.wave + 1}: {'; '.join(breaches)}: "
        f"{action} at {verdict_time(now)}"
    )
    if action == "paused":
        return _pause(campaign, now, reason=reason, auto=True)
    cancelled, recalled = _abort(campaign, now)
    if recalled is not None:
        reason += f"; recalled from {recalled} devices"
    Campaign.objects.filter(pk=cancelled.pk).update(
        canary_reason=reason, canary_verdict_at=now
    )
    cancelled.canary_reason, cancelled.canary_verdict_at = reason, now
    return cancelled


def verdict_time(at: datetime) -> str:
    """The verdict's time as the stored reason says it (the API's, in UTC)."""
    return f"{at.astimezone(UTC):%H:%M} UTC"


def campaign_abort(
    *, campaign: Campaign, by: Any = None, now: datetime | None = None
) -> Campaign:
    """Cancel a campaign by hand; a canary set to recall on abort also
    recalls what its waves delivered, as when its judge aborts it."""
    return _abort(campaign, now or timezone.now())[0]


def _abort(campaign: Campaign, now: datetime) -> tuple[Campaign, int | None]:
    """Cancel (the rest is never sent, the undelivered withdrawn), then,
    with canary_recall_on_abort, recall from the devices that may have it
    (campaigns.recall): the cancelled campaign and the devices told, or
    None when nothing was recalled."""
    from campaigns import lifecycle, recall

    recalling = has_waves(campaign) and campaign.canary_recall_on_abort
    with transaction.atomic():  # cancelled and recalled, or neither
        # A recall cancels the open deliveries itself, after it has seen
        # which devices were written one (lifecycle.campaign_cancel).
        cancelled = lifecycle.campaign_cancel(
            campaign=campaign, now=now, withdraw=not recalling
        )
        if not recalling:
            return cancelled, None
        if not recall.campaign_messages(cancelled):
            return cancelled, 0
        return cancelled, recall.campaign_recall(campaign=cancelled)["targets"]


def wave_promote(
    *, campaign: Campaign, now: datetime | None = None, by: Any = None, reason: str = ""
) -> Campaign:
    """Release the next wave now (paused or sending); slices start over."""
    from campaigns.lifecycle import CampaignStateError

    now = now or timezone.now()
    with transaction.atomic():
        # Slices, then the campaign: the sender's lock order.
        slices = list(
            CampaignSlice.objects.select_for_update()
            .filter(campaign_id=campaign.pk)
            .order_by("pk")
        )
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status not in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
            raise CampaignStateError(
                {"status": [f"A {locked.status} campaign has no wave to release."]}
            )
        if not awaits_wave(locked):
            raise CampaignStateError({"status": ["Every wave is already released."]})
        locked.wave += 1
        locked.wave_sent_at = None
        locked.status = CampaignStatus.SENDING
        locked.canary_auto_paused = False
        if by is not None:
            locked.canary_reason = f"Wave {locked.wave + 1} released by {by}"
        elif reason:
            locked.canary_reason = reason
        locked.save(
            update_fields=[
                "wave",
                "wave_sent_at",
                "status",
                "canary_auto_paused",
                "canary_reason",
            ]
        )
        ttl = timedelta(seconds=locked.ttl_seconds)
        for slice_ in slices:
            start = max(slice_.due_at, now)
            slice_.done, slice_.cursor, slice_.online_pass = False, "", True
            slice_.next_chunk_at, slice_.expires_at = start, start + ttl
        CampaignSlice.objects.bulk_update(
            slices, ["done", "cursor", "online_pass", "next_chunk_at", "expires_at"]
        )
    return locked


def campaign_pause(
    *, campaign: Campaign, by: Any = None, now: datetime | None = None
) -> Campaign:
    """Hold a sending campaign: no chunk is sent until it is resumed."""
    return _pause(campaign, now or timezone.now(), reason="", auto=False)


def campaign_resume(
    *, campaign: Campaign, by: Any = None, now: datetime | None = None
) -> Campaign:
    """Continue a paused campaign. After an automatic pause the marketer
    overrides the verdict: the next wave is released."""
    from campaigns import lifecycle

    now = now or timezone.now()
    if campaign.canary_auto_paused and awaits_wave(campaign):
        return wave_promote(campaign=campaign, now=now, by=by or "hand")
    return lifecycle.campaign_transition(
        campaign=campaign, to=CampaignStatus.SENDING, canary_auto_paused=False
    )


def _pause(campaign: Campaign, now: datetime, *, reason: str, auto: bool) -> Campaign:
    from campaigns import lifecycle

    fields: dict[str, Any] = {"canary_auto_paused": auto}
    if reason:
        fields["canary_reason"], fields["canary_verdict_at"] = reason, now
    return lifecycle.campaign_transition(
        campaign=campaign, to=CampaignStatus.PAUSED, **fields
    )
