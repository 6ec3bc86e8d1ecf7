"""KPNS's ASGI application plus the benchmark's baseline design at
/ws/bench/naive/ (bench/naive.py): `kpns_serve --application
bench.asgi.application`. Production never imports the benchmark."""

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from bench import memsnap
from bench.naive import NaiveConsumer
from devices.delivery.routing import websocket_urlpatterns
from kpns_site.asgi import application as kpns

application = ProtocolTypeRouter(
    {
        "http": kpns.application_mapping["http"],
        "websocket": URLRouter(
            [*websocket_urlpatterns, path("ws/bench/naive/", NaiveConsumer.as_asgi())]
        ),
    }
)

memsnap.install()
