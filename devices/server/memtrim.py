"""Free memory handed back to the system once a burst of sockets settles.

When every socket of a process closes at once, the closing work of all of
them is alive at the same moment as the sockets; afterwards the C
allocator (glibc) keeps the freed pages, and the reconnected sockets do not
use all of them: the process stayed several MB larger than after its first
connect (docs/benchmarks.md, "Idle memory after churn"). malloc_trim(0)
returns glibc's free pages. It runs here after at least MIN_CHANGES
sockets came or went and then none for SETTLED_SECONDS, in a worker
thread (it takes milliseconds and holds an allocator lock meanwhile, not
the GIL). Python's own small-object arenas are not glibc's: a 1 MB arena
goes back only once every object in it is freed.
"""

import asyncio
import ctypes
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

SETTLED_SECONDS = 2.0
MIN_CHANGES = 500


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None  # not glibc (musl, macOS): nothing to call
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


def trim() -> bool:
    """Hand glibc's free pages back; False where there is no malloc_trim."""
    function = _malloc_trim()
    if function is None:
        return False
    started = time.perf_counter()
    released = function(0)
    logger.debug(
        "malloc_trim: %s in %.1f ms",
        "released memory" if released else "nothing to release",
        (time.perf_counter() - started) * 1000,
    )
    return True


async def run(changes: Callable[[], int]) -> None:
    """Trim after each settled burst; `changes` counts sockets opened and
    closed so far."""
    if _malloc_trim() is None:
        return
    trimmed_at = seen = changes()
    while True:
        await asyncio.sleep(SETTLED_SECONDS)
        now = changes()
        if now == seen and now - trimmed_at >= MIN_CHANGES:
            await asyncio.to_thread(trim)
            trimmed_at = now
        seen = now
