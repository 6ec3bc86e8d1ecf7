"""Serve KPNS with Daphne, configured for long-lived device sockets."""

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string

from devices.conf import kpns_setting
from devices.server.twistedlog import route_twisted_logs

logger = logging.getLogger("kpns.serve")


class Command(BaseCommand):
    help = "Run a Daphne server process for the admin, the API and device sockets."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--access-log", action="store_true")
        parser.add_argument(
            "--application",
            default=settings.ASGI_APPLICATION,
            help="dotted path of the ASGI application (default: ASGI_APPLICATION)",
        )
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="trust X-Forwarded-For/-Port/-Proto from the proxy in front "
            "(nginx, deploy/nginx/kpns.conf); only when nothing else can reach "
            "this port",
        )
        parser.add_argument(
            "--backlog",
            type=int,
            default=2048,
            help="listen backlog (Twisted's default is 50: a drain or restart "
            "elsewhere sends thousands of reconnects at once); the kernel caps "
            "it at net.core.somaxconn",
        )
        parser.add_argument(
            "--drain-seconds",
            type=float,
            default=None,
            help="on SIGTERM, how long to wait for devices to move elsewhere "
            "(default KPNS_DRAIN_SECONDS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Daphne installs Twisted's asyncio reactor on import: import it here,
        # inside the command, so other commands never pay for it.
        from daphne.endpoints import build_endpoint_description_strings

        from devices import patches
        from devices.server import gcpause

        # Before anything serves: refuses to start if a patched library
        # changed (docs/operations.md, "Start-up check of the patches").
        try:
            installed = patches.install(server=True)
        except patches.PatchMismatch as exc:
            raise CommandError(str(exc)) from None
        logger.info("patches installed: %s", ", ".join(installed))

        from devices.patches.daphne import NO_PINGS
        from devices.server.serve import DrainingServer

        application = import_string(options["application"])

        gcpause.watch()
        gcpause.tune(kpns_setting("GC_THRESHOLDS"))

        logging.getLogger("daphne").setLevel(logging.WARNING)
        endpoints = [
            f"{endpoint}:backlog={options['backlog']}"
            for endpoint in build_endpoint_description_strings(
                host=options["host"], port=options["port"]
            )
        ]
        route_twisted_logs()
        # A log line, not stdout: with LOG_FORMAT=json it is JSON too.
        logger.info("KPNS serving on http://%s:%s/", options["host"], options["port"])
        drain = options["drain_seconds"]
        proxy = options["proxy_headers"]
        # SIGTERM drains (devices.server): 1012 to every socket, then exit.
        DrainingServer(
            application=application,
            endpoints=endpoints,
            drain_seconds=kpns_setting("DRAIN_SECONDS") if drain is None else drain,
            # Daphne takes the first X-Forwarded-For address: the proxy must
            # set it (nginx: $remote_addr), never append to a client's value.
            proxy_forwarded_address_header="X-Forwarded-For" if proxy else None,
            proxy_forwarded_proto_header="X-Forwarded-Proto" if proxy else None,
            # Device sockets live for days: no maximum socket age.
            websocket_timeout=-1,
            # Protocol pings only if configured (devices.conf): devices ping,
            # and the node's watchdog closes silent sockets.
            ping_interval=kpns_setting("SERVER_PING_SECONDS") or NO_PINGS,
            ping_timeout=30,
            # Frames above the limit fail the socket with 1009 before they
            # are buffered whole (devices.conf MAX_FRAME_BYTES).
            websocket_max_message_size=kpns_setting("MAX_FRAME_BYTES"),
            websocket_max_frame_size=kpns_setting("MAX_FRAME_BYTES"),
            websocket_handshake_timeout=10,
            websocket_connect_timeout=10,
            application_close_timeout=10,
            verbosity=1 if options["access_log"] else 0,
        ).run()
