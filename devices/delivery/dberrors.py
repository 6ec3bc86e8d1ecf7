"""What a database error means for the caller: an outage, a conflict, or a bug.

Only an unreachable database is an outage (HTTP 503, WebSocket 4503, "try
again later"). A deadlock or serialization failure is a conflict between
two transactions: retried here, never reported as an outage. Anything else
is a bug and is logged with its cause (docs/guarantees.md).
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError

logger = logging.getLogger(__name__)

T = TypeVar("T")

UNREACHABLE = "unreachable"
CONFLICT = "conflict"
OTHER = "other"

# SQLSTATE classes and codes (PostgreSQL, "Errors and Messages" appendix):
# 08 connection exception; 57P01-57P03 shutdown / cannot connect now;
# 53300 too many connections.
_UNREACHABLE_STATES = ("57P01", "57P02", "57P03", "53300")
# 40001 serialization_failure, 40P01 deadlock_detected.
_CONFLICT_STATES = ("40001", "40P01")
CONFLICT_ATTEMPTS = 4


def classify(exc: BaseException) -> str:
    """UNREACHABLE, CONFLICT or OTHER for an exception from the ORM."""
    if not isinstance(exc, DatabaseError):
        return OTHER
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None)
    if state in _CONFLICT_STATES:
        return CONFLICT
    if state is not None:
        if state.startswith("08") or state in _UNREACHABLE_STATES:
            return UNREACHABLE
        return OTHER
    # No SQLSTATE: the client library failed before the server answered
    # (refused connect, broken socket, pool timeout) or SQLite is locked.
    if isinstance(exc, InterfaceError | OperationalError):
        return UNREACHABLE
    return OTHER


def unreachable(exc: BaseException) -> bool:
    return classify(exc) == UNREACHABLE


def retry_conflicts(func: Callable[[], T], *, what: str) -> T:
    """Run a transaction again when it lost a deadlock or serialization race.

    `func` must be a whole transaction (atomic, with no effect outside the
    database before it commits).
    """
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return func()
        except DatabaseError as exc:
            if classify(exc) != CONFLICT or attempt == CONFLICT_ATTEMPTS:
                raise
            logger.info("%s: %s, retrying (attempt %d)", what, exc, attempt)
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
