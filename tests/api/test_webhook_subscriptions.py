"""Receipt flushes read which apps subscribe to delivery webhooks from a
short per-process cache, refreshed at once when an endpoint changes here."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.integrations import webhooks
from devices.models import WebhookEndpoint, WebhookEvent

pytestmark = pytest.mark.django_db

EVENTS = (WebhookEvent.MESSAGE_DELIVERED, WebhookEvent.MESSAGE_OPENED)


@pytest.fixture(autouse=True)
def nothing_cached():
    webhooks.subscriptions_forget()  # a rolled-back test's endpoints
    yield
    webhooks.subscriptions_forget()


def create(app, events):
    return WebhookEndpoint.objects.create(
        app=app, url="https://hooks.example.com/k", events=events, secret="whsec_x"
    )


def test_flushes_within_the_cache_time_share_one_query(app, settings):
    settings.KPNS = {**settings.KPNS, "WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS": 60.0}
    create(app, [WebhookEvent.MESSAGE_DELIVERED])
    with CaptureQueriesContext(connection) as queries:
        for _ in range(20):
            assert webhooks.subscriptions(EVENTS) == {
                app.pk: {WebhookEvent.MESSAGE_DELIVERED}
            }
    assert len(queries) <= 1


def test_an_endpoint_saved_in_this_process_is_seen_at_once(app, settings):
    settings.KPNS = {**settings.KPNS, "WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS": 60.0}
    assert webhooks.subscriptions(EVENTS) == {}
    endpoint = create(app, [WebhookEvent.MESSAGE_OPENED])
    assert webhooks.subscriptions(EVENTS) == {app.pk: {WebhookEvent.MESSAGE_OPENED}}
    endpoint.delete()
    assert webhooks.subscriptions(EVENTS) == {}


def test_a_change_made_elsewhere_is_seen_after_the_cache_time(app, settings):
    settings.KPNS = {**settings.KPNS, "WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS": 60.0}
    endpoint = create(app, [WebhookEvent.MESSAGE_DELIVERED])
    assert webhooks.subscriptions(EVENTS)
    # As another process would: no signal in this one.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    assert webhooks.subscriptions(EVENTS)  # still cached
    settings.KPNS = {**settings.KPNS, "WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS": 0.0}
    assert webhooks.subscriptions(EVENTS) == {}
