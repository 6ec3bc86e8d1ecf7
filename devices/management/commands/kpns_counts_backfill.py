"""Count the deliveries of messages sent before counters existed.

`manage.py kpns_counts_backfill [--limit N]`: writes the base counter row of
up to N messages that have none (devices.delivery.counters), each from one
COUNT of its rows. Safe while KPNS runs; a message left out is counted on
its first stats read instead.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from devices.delivery import counters


class Command(BaseCommand):
    help = "Write the counters of messages sent before counters existed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        done = counters.counts_backfill_all(limit=options["limit"])
        self.stdout.write(f"counted {done} message(s)")
