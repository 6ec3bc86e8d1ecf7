"""ASGI entry point: HTTP goes to Django, /ws/ to the device consumer."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does first

from kpns_site.handler import KpnsASGIHandler  # noqa: E402

django_asgi_app = KpnsASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from devices.routing import websocket_urlpatterns  # noqa: E402

if os.environ.get("KPNS_BENCH_NAIVE") == "1":
    # The benchmark's baseline design (bench/naive.py); never on in production.
    from django.urls import path  # noqa: E402

    from bench.naive import NaiveConsumer  # noqa: E402

    websocket_urlpatterns = [
        *websocket_urlpatterns,
        path("ws/bench/naive/", NaiveConsumer.as_asgi()),
    ]

from kpns_site import requestdb  # noqa: E402
from kpns_site.bodylimit import BodyLimitMiddleware  # noqa: E402

requestdb.install()

application = ProtocolTypeRouter(
    {
        # Oversized request bodies get 413 before Django buffers them.
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
