"""WSGI entry point: the admin and the API under a conventional HTTP server.

In the production layout (docs/operations.md) gunicorn serves every HTTP
request with this application, and the Daphne processes of `kpns_serve`
hold the device sockets (kpns_site/asgi.py). A push made here reaches the
sockets through the Redis channel layer; the process holds no node, so its
layer sends run on one long-lived event loop (devices/loopthread.py), not
on a new loop with a new Redis connection for every request.
"""

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")

django_application = get_wsgi_application()

from devices.delivery import wakeups  # noqa: E402  (after Django is set up)

wakeups.send_on_own_loop()


def forwarded_client(app: Callable[..., Iterable[bytes]]) -> Callable[..., Any]:
    """REMOTE_ADDR from the proxy's X-Forwarded-For, as `kpns_serve
    --proxy-headers` does for Daphne: per-address rate limits and access
    logs need the device's address, not nginx's. nginx SETS the header to
    its peer (deploy/nginx/kpns.conf), so its first address is the client."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            environ["REMOTE_ADDR"] = forwarded.split(",", 1)[0].strip()
        return app(environ, start_response)

    return wrapped


# KPNS_PROXY_HEADERS=true only when nothing but the proxy reaches this
# server (deploy/gunicorn.conf.py binds to loopback and sets it).
if os.environ.get("KPNS_PROXY_HEADERS", "").lower() in ("1", "true", "yes"):
    application = forwarded_client(django_application)
else:
    application = django_application
