"""Where an idle socket's memory goes: a census of a server's objects.

Bench only, loaded by bench/asgi.py when KPNS_BENCH_MEMSNAP=1. SIGUSR2
counts every object the garbage collector tracks, by type, with its size
(an instance with a __dict__ counts the dict's size too, and that dict is
not counted again as a dict). The second and later censuses are compared
with the first and written as JSON to snapshot_path() (the `memory`
scenario, bench/scenarios.py, sends the signals around a reconnect of
every socket). tracemalloc was tried first: tracing every allocation
slowed the reconnect past Daphne's handshake timeout.

Strings, bytes and integers are not tracked by the collector: what they
hold is the difference between the census and the RSS per socket.
"""

import collections
import gc
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

TOP = 40
_first: dict[str, Any] = {}


def install() -> None:
    if os.environ.get("KPNS_BENCH_MEMSNAP") == "1":
        signal.signal(signal.SIGUSR2, _on_signal)


def snapshot_path(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"kpns-memsnap-{pid}.json"


def census() -> tuple[collections.Counter[str], collections.Counter[str]]:
    gc.collect()
    objects = gc.get_objects()
    owned: set[int] = set()
    counts: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in objects:
        kind = type(obj)
        if isinstance(obj, type) or kind.__name__ == "module":
            continue
        attributes = getattr(obj, "__dict__", None)
        if type(attributes) is dict:
            owned.add(id(attributes))
            sizes[_name(kind)] += sys.getsizeof(attributes)
    for obj in objects:
        if id(obj) in owned:
            continue
        name = _name(type(obj))
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    return counts, sizes


def _name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _on_signal(sig: int, frame: Any) -> None:
    counts, sizes = census()
    if not _first:
        _first.update(counts=counts, sizes=sizes)
        _write({"baseline": True})
        return
    protocols = [o for o in gc.get_objects() if type(o).__name__ == "WebSocketProtocol"]
    attributes = len(vars(protocols[0])) if protocols else 0
    counts.subtract(_first["counts"])
    sizes.subtract(_first["sizes"])
    _write(
        {
            "size_diff": sum(sizes.values()),
            "protocol_attributes": attributes,
            "by_type": [
                {"type": name, "bytes": size, "objects": counts[name]}
                for name, size in sizes.most_common(TOP)
            ],
        }
    )


def _write(data: dict[str, Any]) -> None:
    snapshot_path(os.getpid()).write_text(json.dumps(data, indent=1))
