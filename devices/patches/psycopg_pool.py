"""psycopg-pool: retry a lost database connection every second.

Written for psycopg-pool 3.3.3 (WRITTEN_FOR); an optimisation of recovery
time. Django builds the pool itself, so there is no constructor argument to
pass; the pool's retry delays come from class constants.

psycopg_pool retries a lost connection after 1, 2, 4, 8, 16 s: a process
recovered up to 16 s after a 20 s PostgreSQL outage ended
(tests/reliability). Retry every second instead (0.1 s jitter).
"""

from psycopg_pool.base import AttemptWithBackoff

from devices.patches.guard import Library, Patch, members

LIBRARY = Library("psycopg-pool", frozenset({"3.3.3"}))

DELAY_BACKOFF = 1.0


def _check() -> list[str]:
    problems = members(
        AttemptWithBackoff,
        {"DELAY_BACKOFF": None, "INITIAL_DELAY": None, "update_delay": ("now",)},
    )
    if not problems and not isinstance(AttemptWithBackoff.DELAY_BACKOFF, float):
        problems.append(
            "psycopg_pool.base.AttemptWithBackoff.DELAY_BACKOFF is no float"
        )
    return problems


def _apply() -> None:
    AttemptWithBackoff.DELAY_BACKOFF = DELAY_BACKOFF


PATCHES = [Patch("psycopg-pool-retry-every-second", LIBRARY, _check, _apply)]
