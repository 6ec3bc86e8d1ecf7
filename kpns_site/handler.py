"""Django's ASGI handler, without a thread per request for pooled API views.

Django wraps every ASGI request in a ``ThreadSensitiveContext``, which makes
a thread for the request's sync code and joins it afterwards. Requests for
views made with ``kpns_site.apithreads.pooled`` skip that context: their
view runs on the API thread pool, and the rest of the request (middleware,
which runs on the event loop here, and Django's request signals) needs no
thread of its own. Every other request is served exactly as Django serves it.
"""

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, get_resolver

from kpns_site import apithreads


class KpnsASGIHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _is_pooled(scope):
            token = apithreads.on_pool.set(True)
            try:
                await self.handle(scope, receive, send)
            finally:
                apithreads.on_pool.reset(token)
            return
        await super().__call__(scope, receive, send)


def _is_pooled(scope: dict[str, Any]) -> bool:
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return bool(getattr(match.func, "kpns_pooled", False))
