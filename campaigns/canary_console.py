"""The campaign page's canary waves: each wave's counts and its signals
against the campaign's thresholds, in words (campaigns.canary)."""

from typing import Any

from django.utils import timezone

from campaigns import canary
from campaigns.models import Campaign


def reason_shown(campaign: Campaign) -> str:
    """The judge's reason with its time in the marketer's zone (the active
    one, campaigns.timezones), as every other time on the page."""
    reason, at = campaign.canary_reason, campaign.canary_verdict_at
    if at is None:
        return reason
    local = timezone.localtime(at)
    return reason.replace(f" at {canary.verdict_time(at)}", f" at {local:%H:%M}", 1)


def waves_shown(campaign: Campaign) -> list[dict[str, Any]]:
    """One row per wave, ready for the template; [] without waves."""
    rows = []
    previous = 0
    for result in canary.wave_results(campaign):
        rows.append(
            {
                "number": result.index + 1,
                "share": f"{result.percent - previous}% (to {result.percent}%)",
                "state": _state(campaign, result),
                "sent": result.sent,
                "delivered": result.delivered,
                "signals": [
                    _signal(
                        "delivered",
                        result.delivery_rate,
                        "≥",
                        campaign.canary_min_delivery_rate,
                    ),
                    _signal(
                        "opened", result.open_rate, "≥", campaign.canary_min_open_rate
                    ),
                    _signal(
                        "opt-outs",
                        result.optout_rate,
                        "≤",
                        campaign.canary_max_optout_rate,
                    ),
                    _signal(
                        "4429/4400 closes",
                        result.close_rate,
                        "≤",
                        campaign.canary_max_close_rate,
                    ),
                    _signal(
                        campaign.canary_event_name or "app events",
                        result.event_rate if campaign.canary_event_name else None,
                        "≤",
                        campaign.canary_max_event_rate,
                    ),
                    _signal(
                        "errors", result.error_rate, "≤", campaign.canary_max_error_rate
                    ),
                ],
            }
        )
        previous = result.percent
    return rows


def _state(campaign: Campaign, result: canary.WaveResult) -> str:
    if not result.released:
        return "waiting"
    if result.index < campaign.wave:
        return "passed"
    if campaign.status in ("cancelled", "paused") and campaign.canary_reason.startswith(
        f"Wave {result.index + 1}:"
    ):
        return "failed"
    if campaign.wave_sent_at is not None and canary.awaits_wave(campaign):
        return "holding"
    return "sending" if campaign.status == "sending" else "released"


def _signal(
    name: str, rate: float | None, sign: str, limit: int | None
) -> dict[str, Any]:
    value = "—" if rate is None else f"{rate * 100:.0f}%"
    if limit is None:
        return {"name": name, "value": value, "limit": "", "ok": True}
    ok = rate is None or (rate * 100 >= limit if sign == "≥" else rate * 100 <= limit)
    return {"name": name, "value": value, "limit": f"{sign} {limit}%", "ok": ok}
