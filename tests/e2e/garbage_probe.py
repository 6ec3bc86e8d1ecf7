"""`manage.py kpns_serve` with a probe: on SIGUSR1 a full collection runs
with DEBUG_SAVEALL and the cyclic garbage it found (objects only a full
collection could free) is written as JSON to KPNS_GARBAGE_REPORT, with the
connections the server still tracks.

Run as a script by tests/e2e/test_connection_memory.py.
"""

import collections
import gc
import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _kind(thing: object) -> str:
    kind = f"{type(thing).__module__}.{type(thing).__qualname__}"
    code = getattr(thing, "__code__", None)  # which closure, for functions
    if code is not None:
        kind += f" {code.co_filename.rsplit('/', 1)[-1]}:{code.co_qualname}"
    return kind


def report(signum: int, frame: object) -> None:
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    gc.set_debug(0)
    garbage = list(gc.garbage)
    gc.garbage.clear()
    kinds = collections.Counter(_kind(o) for o in garbage)
    path = Path(os.environ["KPNS_GARBAGE_REPORT"])
    tmp = path.with_suffix(".tmp")
    servers = [o for o in gc.get_objects() if type(o).__name__ == "DrainingServer"]
    tmp.write_text(
        json.dumps(
            {
                "garbage": len(garbage),
                "kinds": kinds.most_common(10),
                # What the server tracks (devices.checkers).
                "connections": [len(s.connections) for s in servers],
                "settling": [len(s._settling) for s in servers],
                "opening": [len(s._opening) for s in servers],
            }
        )
    )
    tmp.replace(path)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    signal.signal(signal.SIGUSR1, report)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kpns_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", "kpns_serve", *sys.argv[1:]])
