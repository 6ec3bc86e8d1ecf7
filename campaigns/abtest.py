"""A/B tests: per-variant results, their significance, and the winner.

A campaign with variants B to E splits its audience by the variants' shares
(campaigns.content). With a test group (test_percent), only that share of
the audience gets the variants; the campaign then stays "sending" until a
winner is chosen: automatically once winner_window_seconds have passed since
it started (``winners_decide_due``, run by the scheduler with its clock), or
by hand earlier (``winner_pick``). Choosing the winner makes every slice
start over: the devices outside the test group get the winner, the test
group's devices are skipped (they have their variant).

Significance: a two-proportion z-test of each variant against the control
(A) at 95% (two-sided, |z| >= 1.96), on the metric the test is judged by:
open rate (opened / delivered) or delivery rate (delivered / sent). The
normal approximation needs enough of both outcomes, so below MIN_OUTCOMES
successes or failures in either group the answer is "not yet significant"
whatever z says. The automatic winner is the best rate (the earlier variant
on a tie) even when the difference is not significant; the reason says so.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns.durations import duration_words
from campaigns.models import Campaign, CampaignSlice, CampaignStatus, WinnerMetric
from campaigns.selectors import campaign_counts_by

# 95%, two-sided.
Z_95 = 1.959964
# The z-test's normal approximation holds with at least this many successes
# and failures in each group (the usual textbook rule of thumb).
MIN_OUTCOMES = 5


@dataclass(frozen=True)
class VariantResult:
    key: str
    split_percent: int
    sent: int
    delivered: int
    opened: int
    delivered_rate: float | None  # delivered / sent
    opened_rate: float | None  # opened / delivered
    # Against the control (A), on the test's metric; None for A itself.
    difference: float | None
    z: float | None
    significant: bool
    verdict: str


def awaits_winner(campaign: Campaign) -> bool:
    """A test group was sent and the rest waits for the winner."""
    return bool(campaign.test_percent) and not campaign.winner


def variant_results(campaign: Campaign) -> list[VariantResult]:
    """Each variant's counts and rates, and how it compares with A."""
    counts = campaign_counts_by(campaign, "variant")
    shares = [("A", campaign.split_percent)] + [
        (v.key, v.split_percent) for v in campaign.variants.all()
    ]
    metric = campaign.winner_metric
    zero = {"targeted": 0, "delivered": 0, "opened": 0}
    control = _outcomes(counts.get("A", zero), metric)
    results = []
    for key, share in shares:
        row = counts.get(key, zero)
        mine = _outcomes(row, metric)
        z = None if key == "A" else two_proportion_z(*control, *mine)
        significant, verdict = _verdict(key, control, mine, z)
        results.append(
            VariantResult(
                key=key,
                split_percent=share,
                sent=row["targeted"],
                delivered=row["delivered"],
                opened=row["opened"],
                delivered_rate=_rate(row["delivered"], row["targeted"]),
                opened_rate=_rate(row["opened"], row["delivered"]),
                difference=(None if key == "A" else _difference(control, mine)),
                z=z,
                significant=significant,
                verdict=verdict,
            )
        )
    return results


def two_proportion_z(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> float | None:
    """z of B's proportion against A's, with the pooled standard error;
    None when it cannot be computed (no trials, or no variation at all)."""
    if trials_a == 0 or trials_b == 0:
        return None
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    spread = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if spread <= 0:
        return None
    return (successes_b / trials_b - successes_a / trials_a) / math.sqrt(spread)


def winner_choose(results: list[VariantResult], metric: str) -> VariantResult:
    """The best rate on the metric; the earlier variant on a tie."""
    rate = _metric_rate(metric)
    return max(results, key=lambda r: (rate(r) or 0.0, -ord(r.key)))


def winners_decide_due(*, now: datetime) -> int:
    """Choose the winner of every test whose window has passed; the count."""
    waiting = Campaign.objects.filter(
        status=CampaignStatus.SENDING,
        test_percent__isnull=False,
        winner="",
        started_at__isnull=False,
    )
    decided = 0
    for campaign in waiting:
        assert campaign.started_at is not None
        if (
            campaign.started_at + timedelta(seconds=campaign.winner_window_seconds)
            > now
        ):
            continue
        results = variant_results(campaign)
        best = winner_choose(results, campaign.winner_metric)
        window = duration_words(campaign.winner_window_seconds)
        reason = f"Chosen automatically after {window}: {_why(campaign, best)}"
        try:
            winner_set(campaign=campaign, key=best.key, reason=reason, now=now)
        except ValidationError:
            continue  # cancelled or decided meanwhile
        decided += 1
    return decided


def winner_pick(
    *, campaign: Campaign, key: str, by: Any = None, now: datetime | None = None
) -> Campaign:
    """The marketer chooses the winner before the window ends."""
    now = now or timezone.now()
    results = {r.key: r for r in variant_results(campaign)}
    if key not in results:
        raise ValidationError({"winner": [f"No variant {key!r} in this campaign."]})
    who = f" by {by}" if by else ""
    reason = f"Picked{who} before the window ended: {_why(campaign, results[key])}"
    return winner_set(campaign=campaign, key=key, reason=reason, now=now)


def winner_set(*, campaign: Campaign, key: str, reason: str, now: datetime) -> Campaign:
    """Record the winner and start every slice over for the rest."""
    from campaigns.lifecycle import CampaignStateError

    with transaction.atomic():
        # Slices first, then the campaign: the sender's order (a chunk
        # locks its slice, then may touch its campaign's row).
        slices = list(
            CampaignSlice.objects.select_for_update()
            .filter(campaign_id=campaign.pk)
            .order_by("pk")
        )
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status != CampaignStatus.SENDING or not locked.test_percent:
            raise CampaignStateError(
                {"winner": [f"A {locked.status} campaign has no test to decide."]}
            )
        if locked.winner:
            raise CampaignStateError(
                {"winner": [f"Variant {locked.winner} already won."]}
            )
        locked.winner, locked.winner_reason, locked.winner_at = key, reason, now
        locked.save(update_fields=["winner", "winner_reason", "winner_at"])
        ttl = timedelta(seconds=locked.ttl_seconds)
        for slice_ in slices:
            start = max(slice_.due_at, now)
            slice_.done, slice_.cursor, slice_.online_pass = False, "", True
            slice_.next_chunk_at, slice_.expires_at = start, start + ttl
        CampaignSlice.objects.bulk_update(
            slices,
            ["done", "cursor", "online_pass", "next_chunk_at", "expires_at"],
        )
    return locked


def _outcomes(row: dict[str, int], metric: str) -> tuple[int, int]:
    """(successes, trials) of the metric."""
    if metric == WinnerMetric.DELIVERED:
        return row["delivered"], row["targeted"]
    return row["opened"], row["delivered"]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _difference(control: tuple[int, int], mine: tuple[int, int]) -> float | None:
    a, b = _rate(*control), _rate(*mine)
    return None if a is None or b is None else b - a


def _verdict(
    key: str, control: tuple[int, int], mine: tuple[int, int], z: float | None
) -> tuple[bool, str]:
    if key == "A":
        return False, "control"
    if z is None:
        return False, "not yet significant (no data to compare)"
    few = min(control[0], control[1] - control[0], mine[0], mine[1] - mine[0])
    if few < MIN_OUTCOMES:
        return False, "not yet significant (too few results to tell)"
    if abs(z) >= Z_95:
        return True, "significant at 95%"
    return False, "not yet significant"


def _metric_rate(metric: str) -> Any:
    if metric == WinnerMetric.DELIVERED:
        return lambda r: r.delivered_rate
    return lambda r: r.opened_rate


def _why(campaign: Campaign, chosen: VariantResult) -> str:
    label = WinnerMetric(campaign.winner_metric).label.lower()
    rate = _metric_rate(campaign.winner_metric)(chosen)
    text = f"variant {chosen.key}, {label} {_pct(rate)}"
    if chosen.key == "A":
        return text + " (the control)."
    points = "n/a" if chosen.difference is None else f"{chosen.difference * 100:+.1f}"
    return text + f", {points} points against A; {chosen.verdict}."


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"
