"""GET /metrics: Prometheus text format, for a bearer token or staff.

With PROMETHEUS_MULTIPROC_DIR set (the production layout), every server
process and scheduler on this machine writes its metrics there and this
view, in whichever process answers, reports them all; per-process series
carry a `pid` label. Without it, only the answering process's metrics
appear. Presence figures (devices online per app, nodes alive) come from
the database at scrape time. Metric names: devices/metrics.py and
docs/operations.md.
"""

import glob
import hmac
import os
import re
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from devices.api.problems import PROBLEM_CONTENT_TYPE
from devices.conf import kpns_setting
from devices.delivery import metrics, presence
from devices.models import Node

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db$")


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return JsonResponse(
            {
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
                "detail": "Send Authorization: Bearer <KPNS_METRICS_TOKEN>, "
                "or log in as staff.",
            },
            status=403,
            content_type=PROBLEM_CONTENT_TYPE,
        )
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


def _allowed(request: HttpRequest) -> bool:
    expected = settings.KPNS_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if expected and header.startswith("Bearer "):
        given = header.removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), expected.encode()):
            return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def _registry() -> CollectorRegistry:
    path = metrics.multiprocess_dir()
    if not path:
        registry = REGISTRY
        if not getattr(registry, "_kpns_presence", False):
            registry.register(PresenceCollector())
            registry._kpns_presence = True  # type: ignore[attr-defined]
        return registry
    from prometheus_client import multiprocess

    _forget_dead_processes(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    registry.register(PresenceCollector())
    return registry


def _forget_dead_processes(path: str) -> None:
    """Live gauges of processes that died without saying so (SIGKILL)."""
    for file in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.search(file)
        if match and not _pid_alive(int(match.group(1))):
            metrics.process_exited(int(match.group(1)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PresenceCollector(Collector):
    """Presence as the database records it, across every machine."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        online = GaugeMetricFamily(
            "kpns_online_devices",
            "Devices online (presence in the database), per app.",
            labels=["app"],
        )
        nodes = GaugeMetricFamily(
            "kpns_nodes",
            "Server processes with a Node row, by state.",
            labels=["state"],
        )
        try:
            for row in presence.online_by_app():
                online.add_metric([row["app__name"]], row["online"])
            dead_before = timezone.now() - timedelta(
                seconds=kpns_setting("NODE_DEAD_AFTER_SECONDS")
            )
            counts = {"alive": 0, "dead": 0, "draining": 0}
            for heartbeat_at, draining in Node.objects.values_list(
                "heartbeat_at", "draining"
            ):
                if heartbeat_at < dead_before:
                    counts["dead"] += 1
                elif draining:
                    counts["draining"] += 1
                else:
                    counts["alive"] += 1
            for state, count in counts.items():
                nodes.add_metric([state], count)
        except DatabaseError:
            return
        yield online
        yield nodes
