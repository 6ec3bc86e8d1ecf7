"""(f) Churn and soak: many devices, 10% reconnecting per minute, a campaign
every period; every device gets every campaign exactly once, and server RSS
and the Redis key count stop growing.

Two tiers of the same scenario:

* CI (markers e2e + fault): 1,000 devices on 2 Daphnes, time compressed to
  one campaign every 10 s for 60 s (6 campaigns), 10% of the devices
  dropped (TCP abort, no close frame) per minute, spread evenly.
* soak (marker soak, `make soak`): KPNS_SOAK_DEVICES (default 3,000) for
  KPNS_SOAK_MINUTES (default 5), a campaign every KPNS_SOAK_CAMPAIGN_SECONDS
  (default 60).
"""

import asyncio
import os
import random
import time

import pytest
from channels.db import database_sync_to_async

from tests.devicesim import start_fleet, stop_fleet
from tests.e2e.servers import daphne_servers
from tests.reliability.conftest import (
    online_count,
    record_figure,
    server_tracebacks,
    wait_for,
    world,
)
from tests.reliability.services import private_redis
from tests.reliability.test_faults import (
    has_all,
    new_campaign,
    rss_bytes,
    until,
    use_layer,
    verdict_for,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
]


# Memory is measured in the production shape: with DEBUG on, Django keeps
# the last 9,000 queries of every database connection.
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "churn-" + "k" * 50,
    "SECURE_SSL_REDIRECT": "false",
}


async def run_churn(
    settings,
    tmp_path,
    *,
    name: str,
    devices: int,
    duration: float,
    campaign_every: float,
    churn_per_minute: float = 0.10,
    servers: int = 2,
) -> None:
    rng = random.Random(11)  # noqa: S311
    with private_redis() as redis:
        use_layer(settings, redis.url)
        app, pairs = await world(devices)
        ids = [d for d, _t in pairs]
        with daphne_servers(
            servers, redis_url=redis.url, tmp_path=tmp_path, extra_env=PRODUCTION
        ) as procs:
            fleet = await start_fleet([p.ws_url for p in procs], pairs, timeout=120)
            campaigns: list[str] = []
            samples: list[tuple[float, int, int]] = []  # (t, rss, redis keys)
            dropped = 0
            try:
                assert await wait_for(lambda: online_count(ids) == len(ids), 60)
                started = time.monotonic()
                next_campaign = started
                next_sample = started
                budget = 0.0
                while time.monotonic() - started < duration:
                    now = time.monotonic()
                    if now >= next_campaign:
                        campaigns.append(
                            await database_sync_to_async(new_campaign)(
                                app,
                                name=f"c{len(campaigns)}",
                                title=f"c{len(campaigns)}",
                            )
                        )
                        next_campaign += campaign_every
                    if now >= next_sample:
                        rss = sum(rss_bytes(p.process.pid) for p in procs)
                        samples.append((now - started, rss, redis.key_count()))
                        next_sample += 10
                    budget += devices * churn_per_minute / 60 * 0.5
                    while budget >= 1:
                        await rng.choice(fleet).drop()
                        dropped += 1
                        budget -= 1
                    await asyncio.sleep(0.5)
                assert await until(lambda: has_all(fleet, campaigns), 90), (
                    await verdict_for(fleet, campaigns)
                ).summary()
                await asyncio.sleep(2)  # last acks; idle layer
                rss = sum(rss_bytes(p.process.pid) for p in procs)
                samples.append((time.monotonic() - started, rss, redis.key_count()))
                verdict = await verdict_for(fleet, campaigns)
                verdict.assert_ok()
                assert verdict.owed == len(ids) * len(campaigns)
                reconnects = sum(sim.welcomes - 1 for sim in fleet)
                # Memory: after the first campaign (warm caches), growth over
                # the rest of the run stays within a budget.
                base = samples[1][1] if len(samples) > 2 else samples[0][1]
                growth_mb = (max(s[1] for s in samples[1:]) - base) / 2**20
                record_figure(
                    name,
                    devices=len(ids),
                    servers=servers,
                    duration_s=duration,
                    campaigns=len(campaigns),
                    dropped=dropped,
                    reconnects=reconnects,
                    wire_duplicates=verdict.wire_duplicates,
                    rss_mb=[round(s[1] / 2**20) for s in samples],
                    redis_keys=[s[2] for s in samples],
                    rss_growth_after_warmup_mb=round(growth_mb, 1),
                )
                assert reconnects >= dropped * 0.9
                assert growth_mb < 80
                # Redis holds no per-device or per-message state: its key
                # count stays at a handful (node channels) however long the run.
                assert samples[-1][2] <= 2 * servers + 5
            finally:
                await stop_fleet(fleet)
            assert not server_tracebacks([p.output() for p in procs])


@pytest.mark.fault
@pytest.mark.timeout(300)
async def test_churn_ci_tier(settings, tmp_path):
    await run_churn(
        settings,
        tmp_path,
        name="churn_ci",
        devices=int(os.environ.get("KPNS_CHURN_DEVICES", "1000")),
        duration=60,
        campaign_every=10,
    )


@pytest.mark.soak
@pytest.mark.timeout(3600)
async def test_soak(settings, tmp_path):
    minutes = float(os.environ.get("KPNS_SOAK_MINUTES", "5"))
    await run_churn(
        settings,
        tmp_path,
        name="soak",
        devices=int(os.environ.get("KPNS_SOAK_DEVICES", "3000")),
        duration=minutes * 60,
        campaign_every=float(os.environ.get("KPNS_SOAK_CAMPAIGN_SECONDS", "60")),
        servers=int(os.environ.get("KPNS_SOAK_SERVERS", "2")),
    )
