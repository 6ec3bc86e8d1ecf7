"""Where an idle socket's memory goes: tracemalloc in a server process.

Bench only, loaded by bench/asgi.py when KPNS_BENCH_TRACEMALLOC=1. SIGUSR2
takes a snapshot; the second and later ones are compared with the first and
written as JSON to snapshot_path() (the `memory` scenario,
bench/scenarios.py, sends the signals around a reconnect of every socket).
"""

import collections
import gc
import json
import os
import signal
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

FRAMES = 10
TOP = 40
_first: dict[str, Any] = {}


def install() -> None:
    if os.environ.get("KPNS_BENCH_TRACEMALLOC") != "1":
        return
    signal.signal(signal.SIGUSR2, _on_signal)


def _on_signal(sig: int, frame: Any) -> None:
    if not tracemalloc.is_tracing():
        # Traced from the first snapshot on: tracing every allocation of
        # the first connect slowed handshakes past Daphne's timeout.
        tracemalloc.start(FRAMES)
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    if not _first:
        _first.update(snapshot=snapshot, types=types)
        _write({"baseline": True})
        return
    diff = snapshot.compare_to(_first["snapshot"], "traceback")
    by_line = snapshot.compare_to(_first["snapshot"], "lineno")
    type_diff = types.copy()
    type_diff.subtract(_first["types"])
    _write(
        {
            "size_diff": sum(d.size_diff for d in by_line),
            "by_line": [_stat(d, 1) for d in by_line[:TOP]],
            "by_traceback": [_stat(d, FRAMES) for d in diff[:TOP]],
            "types": type_diff.most_common(TOP),
        }
    )


def _stat(diff: Any, frames: int) -> dict[str, Any]:
    return {
        "size_diff": diff.size_diff,
        "count_diff": diff.count_diff,
        "where": [f"{f.filename}:{f.lineno}" for f in diff.traceback][-frames:],
    }


def snapshot_path(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"kpns-memsnap-{pid}.json"


def _write(data: dict[str, Any]) -> None:
    snapshot_path(os.getpid()).write_text(json.dumps(data, indent=1))
