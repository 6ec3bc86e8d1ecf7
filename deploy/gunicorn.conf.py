"""gunicorn for the admin and the API (docs/operations.md, "Processes").

Started by supervisord (deploy/supervisord.conf) with
`gunicorn -c deploy/gunicorn.conf.py kpns_site.wsgi:application`; the
KPNS_HTTP_* variables come from deploy/env.sh. The device sockets are
Daphne's (`kpns_serve`); this server never sees a WebSocket.

gthread workers: each worker process runs KPNS_HTTP_THREADS requests at
once, so a request waiting on PostgreSQL or Redis does not idle a whole
process, while the GIL keeps one process to about one core of Python. Each
worker has its own database pool (DB_POOL_MAX, keep it >= the threads).
"""

import os
from pathlib import Path

_host = os.environ.get("KPNS_BIND", "127.0.0.1")
bind = f"{_host}:{os.environ.get('KPNS_HTTP_PORT', '8000')}"
workers = int(os.environ.get("KPNS_HTTP_WORKERS", "2"))
threads = int(os.environ.get("KPNS_HTTP_THREADS", "4"))
worker_class = "gthread"
# A restart elsewhere sends bursts; the kernel caps it at net.core.somaxconn.
backlog = 2048
# A worker silent this long is killed and replaced (a stuck request).
timeout = 60
# SIGTERM (or TTOU, retiring an old worker): requests in flight may finish this long.
graceful_timeout = int(float(os.environ.get("KPNS_DRAIN_SECONDS", "10"))) + 5
keepalive = 5
# Logs: errors to stdout (supervisord's log); access lines come from
# Django (kpns_site/logs.py), as under Daphne, with nginx's request id.
errorlog = "-"
accesslog = None
# nginx in front: https from X-Forwarded-Proto (gunicorn trusts it from
# forwarded_allow_ips) and the client address from X-Forwarded-For
# (kpns_site/wsgi.py).
forwarded_allow_ips = os.environ.get("KPNS_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
raw_env = ["KPNS_PROXY_HEADERS=true"]
proc_name = "kpns-http"


# deploy/kpnsctl roll adds new workers (TTIN), which load the new code, and
# retires the old ones (TTOU: the oldest first, each finishing its
# requests) only once every new one has loaded the application and marked
# itself here. A HUP retired the old workers at once: under load the new
# ones took 11 s to import Django, and the API answered nothing meanwhile
# (tests/ops/test_roll_behind_nginx.py at 500 devices, docs/operations.md).
READY_DIR = os.environ.get("KPNS_HTTP_READY_DIR", "")


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook
    if READY_DIR:
        ready = Path(READY_DIR)
        ready.mkdir(parents=True, exist_ok=True)
        for stale in ready.iterdir():  # a previous master's workers
            stale.unlink(missing_ok=True)


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook
    if READY_DIR:
        (Path(READY_DIR) / str(worker.pid)).touch()


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook
    if READY_DIR:
        (Path(READY_DIR) / str(worker.pid)).unlink(missing_ok=True)
    # Prometheus multiprocess mode: drop a dead worker's live gauges.
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)
