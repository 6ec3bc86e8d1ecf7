"""Liveness and readiness.

/healthz (liveness, unchanged): the database and a channel-layer round trip.
/readyz (readiness): the same plus "every migration applied"; 503 problem
JSON when anything is missing, so a deploy can wait for it before sending
traffic (docs/operations.md).
"""

import asyncio
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from kpns_site.problems import PROBLEM_CONTENT_TYPE

CHECK_TIMEOUT = 2.0


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "channel_layer": _check_layer()}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "channel_layer": _check_layer()}
    checks["migrations"] = (
        _check_migrations()
        if checks["database"]["ok"]
        else {"ok": False, "error": "database unavailable"}
    )
    if all(check["ok"] for check in checks.values()):
        return JsonResponse({"status": "ready", "checks": checks})
    failing = ", ".join(name for name, check in checks.items() if not check["ok"])
    response = JsonResponse(
        {
            "type": "about:blank",
            "title": "Service unavailable",
            "status": 503,
            "detail": f"Not ready: {failing}.",
            "checks": checks,
        },
        status=503,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    response["Retry-After"] = "5"
    return response


# Once every migration is applied it stays so for this process's code; the
# plan (which reads every migration file) is computed again only until then.
_migrated = False


def _check_migrations() -> dict[str, Any]:
    global _migrated
    if _migrated:
        return {"ok": True, "unapplied": 0}
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    unapplied = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    _migrated = not unapplied
    if unapplied:
        return {"ok": False, "unapplied": len(unapplied), "next": unapplied[:5]}
    return {"ok": True, "unapplied": 0}


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
