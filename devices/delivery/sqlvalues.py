"""SQL values for long lists: one array parameter on PostgreSQL.

psycopg dumps a Python list element by element in Python, and splits a
query with thousands of placeholders slowly: 5,000 UUIDs took 13.7 ms a
statement as a list, 5.0 ms as one array literal (docs/benchmarks.md).
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models.expressions import RawSQL

from devices.models import Device


def pg_array(values: Iterable[UUID | int | datetime]) -> str:
    """A PostgreSQL array literal of UUIDs, integers or aware datetimes, for a
    `%s::uuid[]` (bigint[], timestamptz[]) parameter.

    psycopg dumps a Python list element by element in Python: 5,000 UUIDs
    took 13.7 ms a statement, the literal 5.0 ms (benchmarks.md). None of
    these values' text needs quoting inside an array literal.
    """
    return (
        "{"
        + ",".join(v.isoformat() if isinstance(v, datetime) else str(v) for v in values)
        + "}"
    )


def id_list_sql(device_ids: list[UUID]) -> tuple[str, list[Any]]:
    """`id IN (...)` for raw SQL: one array parameter on PostgreSQL.

    psycopg spent more time splitting a query with 5,000 placeholders than
    PostgreSQL spent running it.
    """
    if connection.vendor == "postgresql":
        return "id = ANY(%s::uuid[])", [pg_array(device_ids)]
    pk = Device._meta.pk
    assert pk is not None
    params = [pk.get_db_prep_value(i, connection) for i in device_ids]
    return f"id IN ({','.join(['%s'] * len(params))})", params


def in_values(values: list[Any], sql_type: str) -> Any:
    """The right side of an ORM `__in` for a long list (see id_list_sql)."""
    if connection.vendor == "postgresql":
        # sql_type is one of our literals; the values travel as one parameter.
        return RawSQL(f"SELECT unnest(%s::{sql_type}[])", [pg_array(values)])  # noqa: S611
    return values
