"""HTTP requests under ASGI (Daphne) give their database connection back.

Django runs each ASGI request's sync code in a thread made for that
request. With persistent connections (CONN_MAX_AGE > 0, i.e. DB_POOL=false)
the connection stayed open with that finished thread until a garbage
collection freed it: API load under Daphne ran PostgreSQL out of
connections ("too many clients", docs/benchmarks.md). In production the API
is gunicorn's (kpns_site/wsgi.py), whose threads live on and keep theirs;
Daphne still answers /healthz, /readyz and /metrics of its own process,
and everything in the embedded shape, so its requests close theirs here.
"""

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished
from django.db import connections


def close_request_connections(sender: Any, **kwargs: Any) -> None:
    # Only real ASGI requests: the test client's handler keeps its
    # connection (tests run inside a transaction on it).
    if isinstance(sender, type) and issubclass(sender, ASGIHandler):
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()


def install() -> None:
    request_finished.connect(close_request_connections, dispatch_uid="kpns-asgi-db")
