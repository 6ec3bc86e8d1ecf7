"""Run the campaign scheduler until SIGINT or SIGTERM."""

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from campaigns.scheduler import run_scheduler
from devices import patches

# Log lines, not stdout: with LOG_FORMAT=json they are JSON too.
logger = logging.getLogger("kpns.scheduler")


class Command(BaseCommand):
    help = "Send scheduled campaigns as they come due; several may run at once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--poll", type=float, default=0.5, help="seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        # The database pool's retry delay (docs/operations.md, "Start-up
        # check of the patches"): refuses to start if psycopg-pool changed.
        try:
            patches.install(server=False)
        except patches.PatchMismatch as exc:
            raise CommandError(str(exc)) from None
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        logger.info("KPNS scheduler running")
        run_scheduler(stop=stop, poll_seconds=options["poll"])
        logger.info("KPNS scheduler stopped")
