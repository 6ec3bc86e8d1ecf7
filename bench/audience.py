"""What the console's live count costs (docs/api.md, "Audiences"): the two
COUNT queries of devices.registry.audience.audience_estimate, for a flat
spec and for condition trees, on a seeded app.

Seeds `--devices` offline devices (default 100,000) of one app, once: a
platform of 3, a locale of 5, an app version of 5, a plan of 2 and an age
attribute, a vip tag on one in five; then times each spec's estimate
(median of `--runs`). Run against a database of its own:

    DATABASE_URL=postgres://.../bench_audience python -m bench.audience
"""

import argparse
import os
import random
import statistics
import time
import uuid
from typing import Any

APP_NAME = "bench-audience"
EITHER_FR = {
    "all": [
        {
            "any": [
                {"field": "tag", "op": "eq", "value": "vip"},
                {"field": "platform", "op": "eq", "value": "ios"},
            ]
        },
        {"field": "locale", "op": "eq", "value": "fr"},
    ]
}
TYPED = {
    "all": [
        {"field": "app_version", "op": "gte", "value": "1.10"},
        {"field": "attribute", "key": "plan", "op": "eq", "value": "pro"},
        {"field": "attribute", "key": "age", "op": "gt", "value": 30},
    ]
}
SPECS = {
    "flat: tags_any vip, locales fr": {"tags_any": ["vip"], "locales": ["fr"]},
    "(tag vip OR platform ios) AND locale fr": {"where": EITHER_FR},
    "app_version >= 1.10 AND plan = pro AND age > 30": {"where": TYPED},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from devices.registry.audience import audience_estimate, audience_validate

    call_command("migrate", verbosity=0)
    app = _seed(args.devices)
    print(f"{args.devices} devices, median of {args.runs} (load {os.getloadavg()})")
    for name, spec in SPECS.items():
        clean = audience_validate("filter", spec)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            counts = audience_estimate(app, "filter", clean)
            times.append((time.perf_counter() - started) * 1000)
        print(
            f"{name}: {counts['matching']} match, "
            f"{statistics.median(times):.0f} ms ({min(times):.0f}-{max(times):.0f})"
        )


def _seed(count: int) -> Any:
    from django.db import connection

    from devices.models import App, Device, DeviceTag
    from devices.registry.versions import version_key

    app = App.objects.filter(name=APP_NAME).first()
    if app is not None and app.devices.count() == count:
        return app
    if app is not None:
        app.delete()
    app = App.objects.create(name=APP_NAME, client_key=uuid.uuid4().hex)
    rng = random.Random(7)  # noqa: S311 - test data
    devices = []
    for _ in range(count):
        version = rng.choice(["1.9", "1.10", "1.10.2", "2.0.0", "2.1"])
        devices.append(
            Device(
                app=app,
                token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
                token_prefix=uuid.uuid4().hex[:8],
                platform=rng.choice(["android", "ios", "web"]),
                locale=rng.choice(["fr", "fr-FR", "en-US", "de-DE", "es"]),
                app_version=version,
                app_version_key=version_key(version),
                attributes={
                    "plan": rng.choice(["free", "pro"]),
                    "age": rng.randint(18, 70),
                },
            )
        )
    Device.objects.bulk_create(devices, batch_size=5000)
    DeviceTag.objects.bulk_create(
        (
            DeviceTag(device=device, app=app, name="vip")
            for device in devices
            if rng.random() < 0.2
        ),
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return app


if __name__ == "__main__":
    main()
