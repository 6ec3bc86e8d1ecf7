#!/usr/bin/env python
"""Django's command-line utility for KPNS."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    if sys.argv[1:2] == ["kpns_serve"]:
        use_event_loop(os.environ.get("KPNS_EVENT_LOOP", "asyncio"))
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


def use_event_loop(name: str) -> None:
    """KPNS_EVENT_LOOP=uvloop runs Daphne's Twisted reactor on uvloop.

    It must be chosen before anything imports daphne.server, which creates
    the event loop at import time (Django imports it with the daphne app).
    docs/benchmarks.md measures both.
    """
    if name == "uvloop":
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif name != "asyncio":
        raise SystemExit(f"KPNS_EVENT_LOOP must be asyncio or uvloop, not {name!r}")


if __name__ == "__main__":
    main()
