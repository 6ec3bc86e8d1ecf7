"""The delivery policy end to end: a campaign to 1,000 devices, half on a
socket of a real Daphne, half reachable only through Web Push (the local
push service of tests/native/receivers.py, which decrypts every message),
with the push service answering 500 for the first OUTAGE seconds.

Every device gets the campaign exactly once by seq, the stats split by
channel are exact, and the outage delays no socket delivery.
"""

import asyncio
import json
import os
import time
from collections import Counter

import pytest
from channels.db import database_sync_to_async

from campaigns.models import Campaign
from campaigns.selectors import campaign_stats
from devices.native import services
from tests.devicesim import start_fleet, stop_fleet
from tests.e2e.servers import daphne_servers, scheduler_process
from tests.native.receivers import Reply, WebPushService
from tests.reliability.conftest import (
    make_world,
    record_figure,
    server_tracebacks,
    wait_for,
)
from tests.reliability.test_faults import new_campaign, until, use_layer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres_only"),
    pytest.mark.timeout(300),
]

DEVICES = 1000
# 30 s as the issue asks when KPNS_TEST_OUTAGE_SECONDS=30; shorter by default
# to bound CI time. The check is the same.
OUTAGE = float(os.environ.get("KPNS_TEST_OUTAGE_SECONDS", "10"))


def world(service: WebPushService):
    """1,000 devices, each with a Web Push subscription on the local push
    service; returns the app, the devices and each subscription's device."""
    app, devices = make_world(DEVICES, platform="web")
    owner = {}
    for device_id, _token in devices:
        sub = service.subscribe()
        services.credential_register(
            device=app.devices.get(pk=device_id),
            kind="webpush",
            endpoint=sub.endpoint,
            p256dh=sub.p256dh,
            auth=sub.auth,
        )
        owner[sub.endpoint.rsplit("/", 1)[1]] = str(device_id)
    return app, devices, owner


def accepted_by_device(service: WebPushService, owner) -> Counter:
    """(device id, message id, seq) of every push the service accepted."""
    found: Counter = Counter()
    for record in list(service.received):
        if record.status == 201 and record.plaintext:
            body = json.loads(record.plaintext)
            name = record.path.rsplit("/", 1)[1]
            found[(owner[name], body["id"], body["seq"])] += 1
    return found


async def test_campaign_reaches_every_device_once_by_socket_or_web_push(
    settings, redis_url, tmp_path
):
    use_layer(settings, redis_url)
    service = WebPushService()
    service.start()
    service.reply_always(Reply(500))  # the push service is down
    try:
        app, devices, owner = await database_sync_to_async(world)(service)
        connected, offline = devices[: DEVICES // 2], devices[DEVICES // 2 :]
        env = {"KPNS_WEBPUSH_HOSTS": "127.0.0.1"}
        with (
            daphne_servers(
                1, redis_url=redis_url, tmp_path=tmp_path, extra_env=env
            ) as servers,
            scheduler_process(redis_url=redis_url, tmp_path=tmp_path, extra_env=env),
        ):
            fleet = await start_fleet([s.ws_url for s in servers], connected)
            try:
                outage_started = time.monotonic()
                first = await database_sync_to_async(new_campaign)(app)
                # The policy is at work on the offline half and the push
                # service fails it...
                assert await until(
                    lambda: sum(r.status == 500 for r in service.received) > 5, 30
                ), "the scheduler sent nothing to the push service"
                # ...when a second campaign goes out: its socket latency.
                sent_at = time.monotonic()
                second = await database_sync_to_async(new_campaign)(app)
                message_ids = [first, second]
                sockets = {sim.log.device_id: sim for sim in fleet}

                def has_second(sim) -> bool:
                    return any(r.message_id == second for r in sim.log.receipts)

                assert await until(lambda: all(map(has_second, fleet)), 30), (
                    "sockets did not all receive the second campaign"
                )
                latencies = sorted(
                    next(r.at for r in sim.log.receipts if r.message_id == second)
                    - sent_at
                    for sim in fleet
                )
                served_by = sent_at + latencies[-1]
                await asyncio.sleep(
                    max(0.0, outage_started + OUTAGE - time.monotonic())
                )
                outage_ended = time.monotonic()
                service.reply_always(None)
                owed = 2 * len(offline)

                def all_pushed() -> bool:
                    return len(accepted_by_device(service, owner)) >= owed

                # After the outage: the breaker's cool-down (30 s), then the
                # retries go out.
                assert await until(all_pushed, 150), len(
                    accepted_by_device(service, owner)
                )
                await asyncio.sleep(2.0)  # anything extra would show now
                accepted = accepted_by_device(service, owner)
                arrivals = sorted(r.at for r in service.received if r.status == 201)

                def stats_settled():
                    found = [
                        campaign_stats(Campaign.objects.get(message_id=m))
                        for m in message_ids
                    ]
                    # Results are recorded once a chunk's sends all answered.
                    settled = all(
                        s["delivered"] == len(connected)
                        and s["accepted_webpush"] == len(offline)
                        for s in found
                    )
                    return found if settled else None

                all_stats = await wait_for(stats_settled, 15)
            finally:
                await stop_fleet(fleet)
            logs = [s.output() for s in servers]
    finally:
        service.stop()

    # Exactly once, by seq: each offline device got seq 1 (the first
    # campaign) and seq 2 (the second) once each through Web Push; each
    # socket processed both once; no connected device (acked within its
    # grace) was also pushed natively.
    offline_ids = {str(d) for d, _t in offline}
    assert set(accepted.values()) == {1}
    assert {key[0] for key in accepted} == offline_ids
    assert {(key[1], key[2]) for key in accepted} == {(first, 1), (second, 2)}
    for sim in sockets.values():
        processed = [r for r in sim.log.receipts if not r.wire_duplicate]
        assert [(r.message_id, r.seq) for r in processed] == [(first, 1), (second, 2)]
    assert all_stats is not None, "the sockets' acks were not all recorded"
    for stats in all_stats:
        assert stats["targeted"] == DEVICES
        assert stats["delivered_socket"] == len(connected)
        assert stats["accepted_webpush"] == len(offline)
        assert stats["delivered_webpush"] == 0  # nobody opened a notification
        assert (stats["native_failed"], stats["native_retrying"]) == (0, 0)
        assert stats["pending"] == len(offline)  # accepted is not delivered
    # The provider's outage delayed no socket delivery.
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert served_by < outage_ended, "the sockets were served only after the outage"
    assert latencies[-1] < 5.0, latencies[-10:]
    assert not server_tracebacks(logs)
    # The policy's send rate: the most pushes accepted in one second (the
    # retries come due together when the breaker closes).
    rate = max(sum(1 for b in arrivals if a <= b < a + 1.0) for a in arrivals)
    record_figure(
        "native_policy_1000",
        devices=DEVICES,
        outage_s=OUTAGE,
        socket_latency_p99_s=round(p99, 3),
        socket_latency_max_s=round(latencies[-1], 3),
        webpush_accepted=len(accepted),
        webpush_500s=sum(1 for r in service.received if r.status == 500),
        webpush_all_accepted_after_recovery_s=round(arrivals[-1] - outage_ended, 2),
        webpush_rate_per_s=round(rate, 1),
    )
