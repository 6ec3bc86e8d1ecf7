"""ASGI entry point of `kpns_serve` (Daphne): /ws/ to the device consumer,
HTTP to Django.

In production nginx sends Daphne the device sockets only; the admin and
the API are gunicorn's (kpns_site/wsgi.py). Daphne still answers HTTP: its
own /healthz and /readyz (deploy/kpnsctl roll waits on them), and every
request in the embedded shape (`make run`: one process serves all).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
django_asgi_app = get_asgi_application()

from devices.delivery.routing import websocket_consumers  # noqa: E402
from kpns_site import requestdb  # noqa: E402
from kpns_site.asgirouting import DirectRouter  # noqa: E402
from kpns_site.bodylimit import BodyLimitMiddleware  # noqa: E402

requestdb.install()

# Oversized request bodies get 413 before Django buffers them.
http_application = BodyLimitMiddleware(django_asgi_app)
application = DirectRouter(http=http_application, sockets=websocket_consumers)
