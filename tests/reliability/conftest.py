"""Shared set-up for the fault-injection and soak suites."""

import json
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from devices.models import Device
from tests.factories import make_app, make_device

FIGURES = Path(__file__).resolve().parents[2] / "var" / "reliability-figures.jsonl"


@pytest.fixture
def postgres_only():
    """Fault tests need the production shape: several processes on PostgreSQL."""
    if connection.vendor != "postgresql":
        pytest.skip("fault injection runs on PostgreSQL (set DATABASE_URL)")


def record_figure(name: str, **values: object) -> None:
    """Append a measured figure (docs/guarantees.md quotes them)."""
    FIGURES.parent.mkdir(exist_ok=True)
    line = {"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **values}
    with FIGURES.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(f"\nFIGURE {json.dumps(line)}")


def make_world(count: int, **device_fields):
    app = make_app()
    return app, [
        (device.pk, token)
        for device, token in (make_device(app, **device_fields) for _ in range(count))
    ]


async def world(count: int, **device_fields):
    return await database_sync_to_async(make_world)(count, **device_fields)


async def wait_for(check, timeout: float, interval: float = 0.1):
    """Poll a sync check (run in a thread with ORM access) until truthy."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await database_sync_to_async(check)()
        if value:
            return value
        await _sleep(interval)
    return value


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def online_count(device_ids) -> int:
    return Device.objects.filter(pk__in=list(device_ids), node__isnull=False).count()


def server_tracebacks(logs: list[str]) -> list[str]:
    """Unhandled exceptions in server logs (handled warnings carry no marker)."""
    return [
        log
        for log in logs
        if "Exception inside application" in log or "Unhandled error" in log
    ]
