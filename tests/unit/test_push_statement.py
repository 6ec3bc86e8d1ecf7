"""The one-statement push (devices.delivery.enqueue) inserts every column
of a message: a field added to Message and not to the statement would be
lost on PostgreSQL for every API push, batch and stream."""

from devices.delivery.enqueue import _MESSAGE_COLUMNS, CONTROL_COLUMNS
from devices.models import Message


def test_the_push_statement_inserts_every_message_column():
    columns = {field.column for field in Message._meta.concrete_fields}
    assert {name for name, _type in _MESSAGE_COLUMNS} == columns - CONTROL_COLUMNS


def test_the_columns_it_leaves_out_default_to_a_plain_message_in_the_database():
    control = Message._meta.get_field("control")
    control_of = Message._meta.get_field("control_of")
    assert control.db_default == ""
    assert control_of.null
    assert {control.column, control_of.column} == CONTROL_COLUMNS
