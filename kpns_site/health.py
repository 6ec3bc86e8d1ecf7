"""Liveness and readiness (docs/operations.md, "Health").

/healthz (liveness): the process is alive and its event loop answers. It
touches neither PostgreSQL nor Redis: a supervisor or orchestrator that
restarts processes failing it must not restart every healthy process during
a database or Redis outage, which a restart cannot fix (and the restarted
processes would drop their device sockets).

/readyz (readiness): the process can serve. The database answers (and
every migration is applied) and a channel-layer round trip (Redis) works,
each within CHECK_TIMEOUT; 503 problem JSON naming what is missing
otherwise. Rolling restarts (deploy/kpnsctl) and load balancers use it.
"""

import asyncio
import os
import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from devices.api.problems import PROBLEM_CONTENT_TYPE

# Each readiness check gives up after this long: a probe must answer
# before the prober's own timeout (deploy/kpnsctl waits 2 s per try).
CHECK_TIMEOUT = 1.5
_started = time.monotonic()


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "status": "ok",
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - _started, 1),
        }
    )


async def readyz(request: HttpRequest) -> JsonResponse:
    database, layer = await asyncio.gather(_check_database(), _check_layer())
    checks = {"database": database, "channel_layer": layer}
    if database["ok"]:
        checks["migrations"] = database.pop("migrations")
    else:
        checks["migrations"] = {"ok": False, "error": "database unavailable"}
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


def _database_round_trip() -> dict[str, Any]:
    """SELECT 1 and the migration plan, in a thread of its own: the probe
    stops waiting after CHECK_TIMEOUT even when a dead host holds it."""
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        ms = _ms(started)
        return {"ok": True, "ms": ms, "migrations": _check_migrations()}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    finally:
        connection.close()  # back to the pool; never kept by a probe thread


async def _check_database() -> dict[str, Any]:
    result: dict[str, Any] = {"backend": connection.vendor}
    try:
        result |= await asyncio.wait_for(
            sync_to_async(_database_round_trip, thread_sensitive=False)(),
            CHECK_TIMEOUT,
        )
    except TimeoutError:
        result |= {"ok": False, "error": f"no answer within {CHECK_TIMEOUT:g} s"}
    return result


async def _check_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "error": "no channel layer configured"}
    backend = type(layer).__name__
    started = time.monotonic()
    try:
        await asyncio.wait_for(_roundtrip(layer), CHECK_TIMEOUT)
        return {"ok": True, "backend": backend, "ms": _ms(started)}
    except TimeoutError:
        error = f"no answer within {CHECK_TIMEOUT:g} s"
        return {"ok": False, "backend": backend, "error": error}
    except Exception as exc:
        return {"ok": False, "backend": backend, "error": type(exc).__name__}


async def _roundtrip(layer: Any) -> None:
    channel = await layer.new_channel("kpns.health.")
    await layer.send(channel, {"type": "health.ping"})
    await layer.receive(channel)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)
