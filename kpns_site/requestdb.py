"""HTTP requests under ASGI give their database connection back.

Django runs each HTTP request's sync code (views, middleware) in a thread
made for that request. With persistent connections (CONN_MAX_AGE) the
connection stayed open with that finished thread until a garbage
collection freed it: API load ran PostgreSQL out of connections ("too many
clients", docs/benchmarks.md). Closing it when the request finishes costs a
new connection per API request; DB_POOL=true (Django's psycopg pool) makes
that a pool checkout instead (docs/operations.md).
"""

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished

from kpns_site import apithreads


def close_request_connections(sender: Any, **kwargs: Any) -> None:
    # Only real ASGI requests: the test client's handler keeps its
    # connection (tests run inside a transaction on it).
    # Pooled API views give theirs back on their own thread (apithreads).
    if apithreads.on_pool.get():
        return
    if isinstance(sender, type) and issubclass(sender, ASGIHandler):
        apithreads.release_connections()


def install() -> None:
    request_finished.connect(close_request_connections, dispatch_uid="kpns-asgi-db")
