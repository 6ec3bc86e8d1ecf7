"""Which database errors are outages (devices/dberrors.py)."""

import psycopg
import pytest
from django.db import IntegrityError, OperationalError, ProgrammingError

from devices.delivery import dberrors


def wrapped(django_error, cause):
    """As Django wraps a driver error: the driver's exception as __cause__."""
    try:
        raise django_error(str(cause)) from cause
    except django_error as exc:
        return exc


class Driver(Exception):
    def __init__(self, sqlstate):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (wrapped(OperationalError, Driver("40P01")), dberrors.CONFLICT),
        (wrapped(OperationalError, Driver("40001")), dberrors.CONFLICT),
        (wrapped(OperationalError, Driver("08006")), dberrors.UNREACHABLE),
        (wrapped(OperationalError, Driver("57P01")), dberrors.UNREACHABLE),
        (wrapped(OperationalError, Driver("53300")), dberrors.UNREACHABLE),
        (
            wrapped(OperationalError, psycopg.OperationalError("refused")),
            dberrors.UNREACHABLE,
        ),
        (wrapped(IntegrityError, Driver("23505")), dberrors.OTHER),
        (wrapped(ProgrammingError, Driver("42703")), dberrors.OTHER),
        (wrapped(OperationalError, Driver("22021")), dberrors.OTHER),
        (ValueError("not a database error"), dberrors.OTHER),
    ],
)
def test_only_an_unreachable_database_is_an_outage(error, kind):
    assert dberrors.classify(error) == kind


def test_conflicts_are_retried_and_other_errors_are_not():
    calls = []

    def deadlocks_twice():
        calls.append(1)
        if len(calls) < 3:
            raise wrapped(OperationalError, Driver("40P01"))
        return "done"

    assert dberrors.retry_conflicts(deadlocks_twice, what="test") == "done"
    assert len(calls) == 3

    def broken():
        calls.append(1)
        raise wrapped(ProgrammingError, Driver("42703"))

    calls.clear()
    with pytest.raises(ProgrammingError):
        dberrors.retry_conflicts(broken, what="test")
    assert len(calls) == 1


def test_a_conflict_that_never_clears_is_raised_after_the_attempts():
    calls = []

    def always():
        calls.append(1)
        raise wrapped(OperationalError, Driver("40001"))

    with pytest.raises(OperationalError):
        dberrors.retry_conflicts(always, what="test")
    assert len(calls) == dberrors.CONFLICT_ATTEMPTS
