import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.db import connections

from devices.delivery import node as node_module
from tests.factories import make_app


@pytest.fixture(autouse=True)
def fast_kpns(settings):
    """Short timings so behaviour that waits on timers is testable quickly."""
    settings.KPNS = {
        **settings.KPNS,
        "SWEEP_SECONDS": 0.5,
        "NODE_HEARTBEAT_SECONDS": 1.0,
        "RECEIPT_FLUSH_SECONDS": 0.02,
        # Every test client is 127.0.0.1: tests/api/test_limits.py tests it.
        "REGISTER_ADDRESS_RATE_PER_MINUTE": 0,
        # Tests roll their endpoints back without a signal: no cached
        # subscriptions across tests (tests/api/test_webhook_subscriptions.py
        # tests the cache).
        "WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS": 0.0,
    }
    return settings.KPNS


@pytest.fixture(scope="session", autouse=True)
def close_orm_worker_connection(django_db_setup, django_db_blocker):
    """Close the ORM worker thread's connection before the test database goes.

    database_sync_to_async runs ORM calls in one worker thread that keeps its
    connection; PostgreSQL refuses to drop a database that is still in use.
    """
    yield
    from asgiref.sync import SyncToAsync

    from devices.delivery import dbthreads

    with django_db_blocker.unblock():
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
        dbthreads.shutdown()


@pytest.fixture(scope="session", autouse=True)
def process_patches():
    """The library patches every KPNS process installs at start (the
    database pool's retry delay, bulk histogram observations): the test
    process runs like kpns_scheduler. Server patches are kpns_serve's."""
    from devices import patches

    patches.install(server=False)


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new channel layer per test: each async test has its own event loop,
    and channels-redis keeps loop-bound locks and pools in the layer."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def app(db):
    return make_app()


@pytest.fixture
async def stop_nodes():
    """Stop the node of the test's event loop after the test."""
    yield
    loop = asyncio.get_running_loop()
    node = node_module._nodes.pop(loop, None)
    if node is not None:
        await node.stop()
    # The ORM worker thread keeps its connection; PostgreSQL refuses to drop
    # the test database while it is open.
    await database_sync_to_async(connections.close_all)()
