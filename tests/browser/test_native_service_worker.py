"""The demo page's service worker receives a Web Push in a real Chromium:
the push is what KPNS sent to a (local) push service, handed to the worker
through the DevTools protocol, shown once on the page even when the socket
brings it again, and reported opened from the worker's notification."""

import json
import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db.models import F
from django.utils import timezone

from devices.models import Delivery, DeliveryStatus, Device, Message
from devices.native import dispatch, selectors, services
from devices.native.models import AttemptStatus, NativeAttempt
from tests.browser.test_demo_campaign import wait_for
from tests.e2e.servers import daphne_servers
from tests.factories import make_app
from tests.native.receivers import WebPushService

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
]


def held_back_delivery(device_id: str) -> Delivery:
    """A push for the device that no socket sends yet: written without a
    wake-up and dated in the future, so the node's sweep (pending rows older
    than a second) leaves it alone until the test releases it."""
    device = Device.objects.get(pk=device_id)
    message = Message.objects.create(
        app=device.app,
        title="Flash sale",
        body="through the push service",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    Device.objects.filter(pk=device.pk).update(last_seq=F("last_seq") + 1)
    device.refresh_from_db()
    delivery = Delivery.objects.create(
        message=message,
        device=device,
        seq=device.last_seq,
        expires_at=message.expires_at,
    )
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() + timedelta(minutes=5)
    )
    return delivery


def release(delivery_id: int) -> None:
    Delivery.objects.filter(pk=delivery_id).update(
        created_at=timezone.now() - timedelta(seconds=5)
    )


def send_through_provider(delivery_id: int, service: WebPushService) -> bytes:
    """The policy's send, to the local push service; its decrypted body."""
    delivery = Delivery.objects.get(pk=delivery_id)
    sub = service.subscribe()
    services.credential_register(
        device=delivery.device,
        kind="webpush",
        endpoint=sub.endpoint,
        p256dh=sub.p256dh,
        auth=sub.auth,
    )
    natives = selectors.native_deliveries(delivery_ids=[delivery_id])

    async def send():
        try:
            return await dispatch.native_send(deliveries=natives)
        finally:
            await dispatch.dispatcher_close()

    results = async_to_sync(send)()
    assert [r.status for r in results] == [AttemptStatus.ACCEPTED]
    return service.received[-1].plaintext


@pytest.mark.timeout(180)
def test_web_push_reaches_the_worker_once_and_is_reported_opened(
    browser, orm, redis_url, tmp_path, settings
):
    settings.KPNS = {**settings.KPNS, "WEBPUSH_HOSTS": ["127.0.0.1"]}
    orm(make_app, name="Demo app")
    service = WebPushService()
    service.start()
    try:
        with daphne_servers(1, redis_url=redis_url, tmp_path=tmp_path) as (server,):
            base = server.http_url
            context = browser.new_context()
            context.grant_permissions(["notifications"], origin=base)
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            registrations: list[dict] = []
            cdp.on(
                "ServiceWorker.workerRegistrationUpdated",
                lambda event: registrations.extend(event["registrations"]),
            )
            cdp.send("ServiceWorker.enable")
            page.goto(f"{base}/demo/")
            page.wait_for_selector('#state[data-state="connected"]', timeout=20_000)
            page.wait_for_selector(
                'body[data-service-worker="ready"]', state="attached", timeout=20_000
            )
            device_id = page.inner_text("#device-id")
            registration = wait_for(
                lambda: next(
                    (r for r in registrations if r["scopeURL"] == f"{base}/"), None
                ),
                what="the service worker's registration",
            )

            delivery = orm(held_back_delivery, device_id)
            plaintext = orm(send_through_provider, delivery.pk, service)
            assert json.loads(plaintext)["seq"] == delivery.seq
            cdp.send(
                "ServiceWorker.deliverPushMessage",
                {
                    "origin": base,
                    "registrationId": registration["registrationId"],
                    "data": plaintext.decode(),
                },
            )
            card = f'.card[data-seq="{delivery.seq}"]'
            page.wait_for_selector(card, timeout=10_000)
            assert page.get_attribute(card, "data-channel") == "webpush"
            assert page.evaluate("window.kpns.lastSeq") == delivery.seq

            # The worker showed the notification, under the message id.
            worker = wait_for(lambda: context.service_workers, what="worker")[0]
            tags = worker.evaluate(
                "async () => (await self.registration.getNotifications())"
                ".map((n) => n.tag)"
            )
            assert tags == [str(delivery.message_id)]

            # The socket brings the same message later: dropped by seq, acked.
            orm(release, delivery.pk)
            wait_for(
                lambda: page.evaluate("window.kpns.stats.duplicates") >= 1,
                timeout=15,
                what="the socket's copy",
            )
            wait_for(
                lambda: orm(
                    lambda: (
                        Delivery.objects.get(pk=delivery.pk).status
                        == DeliveryStatus.DELIVERED
                    )
                ),
                what="the socket ack",
            )
            assert page.locator(card).count() == 1
            assert page.evaluate("window.kpns.stats.pushes") == 1

            # Clicking the notification reports it opened, from the worker.
            reported = worker.evaluate(
                "async () => { const [n] = await self.registration.getNotifications();"
                " return self.kpnsOpenNotification(n); }"
            )
            assert reported is True, worker.evaluate(
                "async () => { const c = await (await (await caches.open('kpns-sw'))"
                ".match('/kpns-sw-config')).json(); const r = await fetch("
                "c.server + '/api/v1/device/opened', {method: 'POST', headers: "
                "{'Content-Type': 'application/json', Authorization: 'Device ' + "
                f"c.token}}, body: JSON.stringify({{id: '{delivery.message_id}', "
                f"seq: {delivery.seq}}})}}); return r.status + (await r.text()); }}"
            )
            wait_for(
                lambda: page.locator(f"{card}.opened").count() == 1,
                what="the card marked opened",
            )
            row = orm(lambda: Delivery.objects.get(pk=delivery.pk))
            assert row.status == DeliveryStatus.OPENED and row.opened_at
            attempt = orm(lambda: NativeAttempt.objects.get(delivery_id=delivery.pk))
            assert attempt.status == AttemptStatus.ACCEPTED
            context.close()
    finally:
        service.stop()
    time.sleep(0)
