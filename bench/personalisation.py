"""What personalisation costs a campaign (docs/architecture.md,
"Personalised campaigns"): one message per distinct rendered content.

Seeds `--devices` offline devices (default 5,000: one chunk) with a
distinct first_name and one of 5 plans, then sends three campaigns to all
of them through the real sender (campaigns.sender.send_due): content
without placeholders, `{{ plan }}` (5 contents) and `{{ first_name }}`
(one content per device), and prints for each the time from start to
the last chunk committed (median of `--runs`) and the messages made. Run
against a database of its own:

    DATABASE_URL=postgres://.../bench_personalisation python -m bench.personalisation
"""

import argparse
import os
import statistics
import time
import uuid

CONTENTS = {
    "plain": "Hi there",
    "plan (5 values)": "Your {{ plan }} plan",
    "first_name (1 per device)": 'Hi {{ first_name|default:"there" }}',
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    app = _seed(args.devices)
    for label, title in CONTENTS.items():
        times, made = [], 0
        for _ in range(args.runs):
            seconds, made = _send(app, title)
            times.append(seconds)
        print(
            f"{label:28} {statistics.median(times):6.2f} s "
            f"(runs {', '.join(f'{t:.2f}' for t in times)}), {made} messages"
        )


def _seed(devices: int):  # type: ignore[no-untyped-def]
    from devices.models import App, Device

    App.objects.filter(name="bench personalisation").delete()
    app = App.objects.create(name="bench personalisation", client_key=uuid.uuid4().hex)
    plans = ["free", "basic", "pro", "team", "gold"]
    Device.objects.bulk_create(
        Device(
            app=app,
            token_hash=uuid.uuid4().hex * 2,
            token_prefix="bench",  # noqa: S106 - a label, not a secret
            platform="android",
            attributes={"first_name": f"Name {i}", "plan": plans[i % 5]},
        )
        for i in range(devices)
    )
    return app


def _send(app, title: str) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from campaigns import lifecycle, sender
    from campaigns.models import Campaign, CampaignMessage
    from devices.models import Message

    campaign = lifecycle.campaign_create(
        app=app, name="bench", title=title, audience_kind="all"
    )
    started = time.monotonic()
    lifecycle.campaign_schedule_now(campaign=campaign)
    while sender.send_due(now=timezone.now()):
        pass
    seconds = time.monotonic() - started
    made = CampaignMessage.objects.filter(campaign_id=campaign.pk).count()
    assert Campaign.objects.get(pk=campaign.pk).status == "sent"
    # Its messages (and deliveries) go with it: the next run starts clean.
    links = CampaignMessage.objects.filter(campaign_id=campaign.pk)
    Message.objects.filter(pk__in=links.values("message_id")).delete()
    campaign.delete()
    return seconds, made


if __name__ == "__main__":
    main()
