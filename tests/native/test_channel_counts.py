"""The channel split is read from counters that move with the attempt rows
(devices.native.channelcounts), equal at every step to counting the rows,
and read without touching them; webhooks name the channel that carried a
delivery."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Campaign, CampaignMessage
from devices.delivery import receipts
from devices.integrations import webhooks
from devices.models import Delivery, WebhookDelivery
from devices.native import fallback, selectors, services
from devices.native.dispatch import NativeResult
from tests.factories import make_api_key, make_device
from tests.native.conftest import channel_split_counted, make_delivery
from tests.native.test_fallback import subscribed

pytestmark = pytest.mark.django_db(transaction=True)


def campaign_like(app, service, devices: int) -> list[Delivery]:
    """One message for `devices` subscribed devices."""
    first_device, _ = subscribed(app, service)
    first = make_delivery(first_device)
    rows = [first]
    for _ in range(devices - 1):
        device, _ = subscribed(app, service)
        device.last_seq += 1
        device.save(update_fields=["last_seq"])
        rows.append(
            Delivery.objects.create(
                message=first.message,
                device=device,
                seq=device.last_seq,
                expires_at=first.expires_at,
            )
        )
    return rows


def test_counters_equal_the_rows_through_claim_retry_accept_fail_and_open(
    app, webpush_service
):
    rows = campaign_like(app, webpush_service, 6)
    message_id = rows[0].message_id

    def check():
        assert selectors.channel_split(message_id) == channel_split_counted(message_id)

    claimed = fallback.fallback_claim(
        delivery_ids=[r.pk for r in rows], now=timezone.now()
    )
    assert len(claimed) == 6
    assert selectors.channel_split(message_id)["webpush"]["retrying"] == 6
    check()
    # A second scheduler's claim of the same rows inserts nothing.
    fallback.fallback_claim(delivery_ids=[r.pk for r in rows], now=timezone.now())
    check()

    outcomes = ["accepted", "accepted", "accepted", "failed", "retry", "accepted"]
    results = [
        NativeResult(native, status, attempts=1)
        for native, status in zip(claimed, outcomes, strict=True)
    ]
    services.native_results_record(results=results)
    check()
    # Recording the same outcomes again moves nothing.
    services.native_results_record(results=results)
    check()
    # The retry is accepted later.
    services.native_results_record(results=[NativeResult(claimed[4], "accepted")])
    check()
    assert selectors.channel_split(message_id)["webpush"] == {
        "accepted": 5,
        "failed": 1,
        "retrying": 0,
        "delivered": 0,
    }

    # One is opened from the service worker (no socket ack before it), one
    # is acked on its socket.
    opened, acked = rows[0], rows[1]
    assert services.native_opened(
        device=opened.device, message_id=str(message_id), seq=opened.seq
    )
    receipts.receipts_record(receipts.Receipts(delivered=[acked.pk]))
    check()
    split = selectors.channel_split(message_id)
    assert split["webpush"]["delivered"] == 1
    assert split["socket"] == {"delivered": 1}
    # Opened twice: counted once.
    services.native_opened(
        device=opened.device, message_id=str(message_id), seq=opened.seq
    )
    check()


def test_the_split_reads_no_attempt_or_delivery_row(app, webpush_service):
    rows = campaign_like(app, webpush_service, 2)
    fallback.fallback_claim(delivery_ids=[r.pk for r in rows], now=timezone.now())
    message_id = rows[0].message_id
    selectors.channel_split(message_id)  # the message counters' first read
    with CaptureQueriesContext(connection) as queries:
        stats = selectors.channel_stats(message_id)
    assert stats["native_retrying"] == 2
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "native_nativeattempt" not in sql and 'devices_delivery"' not in sql
    assert len(queries.captured_queries) == 2  # channel counts, message counts


def test_webhooks_name_the_channel_that_carried_the_delivery(app, webpush_service):
    webhooks.webhook_endpoint_create(
        app=app,
        url="https://example.com/hook",
        events=["message.delivered", "message.opened"],
    )
    by_push, _ = subscribed(app, webpush_service)
    pushed = make_delivery(by_push)
    fallback.fallback_claim(delivery_ids=[pushed.pk], now=timezone.now())
    [native] = selectors.native_deliveries(delivery_ids=[pushed.pk])
    services.native_results_record(results=[NativeResult(native, "accepted")])
    services.native_opened(
        device=by_push, message_id=str(pushed.message_id), seq=pushed.seq
    )
    by_socket, _ = make_device(app)
    acked = make_delivery(by_socket)
    receipts.receipts_record(receipts.Receipts(delivered=[acked.pk]))

    sent = {
        (w.payload["data"]["device_id"], w.event): w.payload["data"]["channel"]
        for w in WebhookDelivery.objects.all()
    }
    assert sent == {
        (str(by_push.pk), "message.delivered"): "webpush",
        (str(by_push.pk), "message.opened"): "webpush",
        (str(by_socket.pk), "message.delivered"): "socket",
    }


def test_the_rest_api_shows_the_split_by_channel(app, webpush_service, client):
    rows = campaign_like(app, webpush_service, 3)
    message_id = rows[0].message_id
    campaign = Campaign.objects.create(
        app=app, name="c", title="t", message_id=message_id, status="sent"
    )
    CampaignMessage.objects.create(
        campaign=campaign, message_id=message_id, content_hash="c"
    )
    claimed = fallback.fallback_claim(
        delivery_ids=[r.pk for r in rows], now=timezone.now()
    )
    outcomes = ["accepted", "failed", "retry"]
    services.native_results_record(
        results=[
            NativeResult(native, status, attempts=1)
            for native, status in zip(claimed, outcomes, strict=True)
        ]
    )
    receipts.receipts_record(receipts.Receipts(delivered=[rows[0].pk]))
    _, key = make_api_key(app, scopes=["stats:read"])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    expected = channel_split_counted(message_id)
    assert expected["webpush"] == {
        "accepted": 1,
        "failed": 1,
        "retrying": 1,
        "delivered": 0,
    }
    assert expected["socket"] == {"delivered": 1}
    message = client.get(f"/api/v1/messages/{message_id}", **auth)
    assert message.status_code == 200, message.content
    assert message.json()["channels"] == expected
    stats = client.get(f"/api/v1/campaigns/{campaign.pk}/stats", **auth)
    assert stats.status_code == 200, stats.content
    assert stats.json()["channels"] == expected
