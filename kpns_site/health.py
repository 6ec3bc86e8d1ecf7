"""Liveness and readiness: /healthz reports the database and the channel layer."""

import asyncio
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

CHECK_TIMEOUT = 2.0


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "channel_layer": _check_layer()}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


def _check_database() -> dict[str, Any]:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "backend": connection.vendor, "ms": _ms(started)}
    except Exception as exc:
        return {"ok": False, "backend": connection.vendor, "error": type(exc).__name__}


def _check_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "error": "no channel layer configured"}
    backend = type(layer).__name__
    started = time.monotonic()
    try:
        async_to_sync(_roundtrip)(layer)
        return {"ok": True, "backend": backend, "ms": _ms(started)}
    except Exception as exc:
        return {"ok": False, "backend": backend, "error": type(exc).__name__}


async def _roundtrip(layer: Any) -> None:
    async def probe() -> None:
        channel = await layer.new_channel("kpns.health.")
        await layer.send(channel, {"type": "health.ping"})
        await layer.receive(channel)

    await asyncio.wait_for(probe(), CHECK_TIMEOUT)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)
