"""Retries and circuit breaking, so that a slow or failing provider costs a
delivery a fast failure, never a held task."""

import random
import time
from dataclasses import dataclass


def backoff_seconds(attempt: int, *, base: float, retry_after: float | None) -> float:
    """The wait before attempt ``attempt + 1``: the provider's Retry-After
    when it gave one, else base x 2^(attempt-1) with +-20% jitter so that
    deliveries failed together do not return together."""
    if retry_after is not None:
        return retry_after
    return base * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)


@dataclass
class CircuitBreaker:
    """Closed, open after ``failures`` consecutive provider failures for
    ``cooldown`` seconds, then half-open: one probe decides."""

    failures: int
    cooldown: float
    _consecutive: int = 0
    _opened_at: float | None = None
    _probing: bool = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if time.monotonic() - self._opened_at < self.cooldown:
            return "open"
        return "half-open"

    def retry_in(self) -> float:
        """Seconds until the breaker lets a probe through."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (time.monotonic() - self._opened_at))

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def record(self, *, failed: bool) -> None:
        self._probing = False
        if not failed:
            self._consecutive = 0
            self._opened_at = None
            return
        self._consecutive += 1
        if self._opened_at is not None or self._consecutive >= self.failures:
            # A failed probe opens it again for a full cool-down.
            self._opened_at = time.monotonic()
