"""API views on a fixed pool of worker threads instead of a thread per request.

Django serves a sync view under ASGI inside a ``ThreadSensitiveContext``:
every request gets a thread made for it, a fresh database wrapper in that
thread and a pooled connection checked out and returned, and Django's
request signals hop into that thread twice. For a small API request that
was more CPU than the view (docs/benchmarks.md, "Targeted REST pushes").

``pooled(view)`` turns a sync view into an async one that runs it on
KPNS_API_CONCURRENCY long-lived threads; ``kpns_site.handler`` serves
requests for such views without the per-request context. A pool thread
gives its connection back to Django's pool after each request, as a
request thread did (kpns_site/requestdb.py), so the pool's size bounds the
connections whatever the number of threads.

Outside the server (Django's test client, management commands) the view
runs as Django would run it: thread-sensitive, on the caller's connection,
so tests inside a transaction see their own rows.
"""

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections
from django.http import HttpRequest, HttpResponse

from devices.conf import kpns_setting

# Set by kpns_site.handler for the requests it serves without a
# ThreadSensitiveContext; unset, a pooled view behaves as a plain sync view.
on_pool: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "kpns_api_on_pool", default=False
)
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            kpns_setting("API_CONCURRENCY"), thread_name_prefix="kpns-api"
        )
    return _executor


def _run_and_release(view: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # What Django's request_started / request_finished do for the thread
    # that ran the view: drop a broken or expired connection, then give the
    # connection back to the pool (a persistent one per thread would need a
    # pool as large as every thread of the process).
    close_old_connections()
    try:
        response = view(*args, **kwargs)
        if hasattr(response, "render") and callable(response.render):
            response.render()  # DRF's lazy rendering, here rather than on the loop
        return response
    finally:
        release_connections()


def release_connections() -> None:
    """Give this thread's connections back (to the pool, with DB_POOL);
    one inside a transaction (a test's) is kept."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def pooled(view: Callable[..., HttpResponse]) -> Callable[..., Any]:
    """An async view running the sync ``view`` on the API thread pool."""
    run_here = sync_to_async(view)  # thread-sensitive: Django's own behaviour

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not on_pool.get():
            return await run_here(request, *args, **kwargs)
        return await sync_to_async(
            _run_and_release, thread_sensitive=False, executor=_pool()
        )(view, request, *args, **kwargs)

    wrapper.kpns_pooled = True  # type: ignore[attr-defined]
    return wrapper

