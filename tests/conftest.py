import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from devices import node as node_module
from tests.factories import make_app


@pytest.fixture(autouse=True)
def fast_kpns(settings):
    """Short timings so behaviour that waits on timers is testable quickly."""
    settings.KPNS = {
        **settings.KPNS,
        "SWEEP_SECONDS": 0.5,
        "NODE_HEARTBEAT_SECONDS": 1.0,
        "RECEIPT_FLUSH_SECONDS": 0.02,
    }
    return settings.KPNS


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
