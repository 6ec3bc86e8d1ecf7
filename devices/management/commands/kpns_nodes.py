"""The live server processes and the sockets each holds; with --can-drain,
whether the others have room for a process's sockets (deploy/kpnsctl roll
asks before it restarts one, devices.delivery.capacity)."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devices.delivery import capacity


class Command(BaseCommand):
    help = "List live server processes and their sockets; check room for a drain."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON document")
        parser.add_argument(
            "--can-drain",
            type=int,
            nargs="+",
            metavar="PID",
            help="processes of this host to drain one after the other: exit "
            "1, saying why, unless the others have room for each one's sockets",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["can_drain"]:
            refusals = capacity.drain_refusals(pids=options["can_drain"])
            if refusals:
                raise CommandError("no room to drain: " + "; ".join(refusals))
            return
        nodes = capacity.nodes_live()
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "max_sockets_per_process": capacity.max_sockets_per_process(),
                        "nodes": capacity.as_json(nodes),
                    }
                )
            )
            return
        limit = capacity.max_sockets_per_process()
        for node in nodes:
            state = "draining" if node.draining else "live"
            self.stdout.write(
                f"{node.name}  {node.hostname}:{node.pid}  {node.held}/{limit} "
                f"sockets  {state}  heartbeat {node.heartbeat_age_s} s ago"
            )
