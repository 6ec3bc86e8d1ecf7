"""KPNS's ASGI application plus the benchmark's baseline design at
/ws/bench/naive/ (bench/naive.py): `kpns_serve --application
bench.asgi.application`. Production never imports the benchmark."""

from bench import memsnap
from bench.naive import NaiveConsumer
from devices.delivery.routing import websocket_consumers
from kpns_site.asgi import http_application
from kpns_site.asgirouting import DirectRouter

application = DirectRouter(
    http=http_application,
    sockets={**websocket_consumers, "ws/bench/naive/": NaiveConsumer},
)

memsnap.install()
