"""The adapter's own SQL constructs compile for SQL Server (no server here; the workflow's live job runs them)."""

from __future__ import annotations

import datetime
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

import dbcore
from dbcore.adapter.context import Page, _encode_cursor, keyset_statement

pytestmark = pytest.mark.compile_only


def compiled(statement: sa.Select) -> str:  # type: ignore[type-arg]
    return str(statement.compile(dialect=mssql.dialect()))


def test_a_keyset_page_compiles_without_row_value_comparison() -> None:
    cursor = _encode_cursor(datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc), uuid.uuid4())
    room = uuid.uuid4()
    sql = compiled(
        keyset_statement(
            sa.select(dbcore.Memory).where(dbcore.Memory.room_id == room), dbcore.Memory, limit=50, after=cursor
        )
    )
    assert sql.startswith("SELECT TOP "), sql
    assert "memories.created_at < " in sql and "memories.created_at = " in sql and "memories.id < " in sql, sql
    assert "(memories.created_at, memories.id)" not in sql
    assert sql.rstrip().endswith("ORDER BY memories.created_at DESC, memories.id DESC"), sql


def test_bad_cursor_and_order_are_refused_before_any_sql() -> None:
    base = sa.select(dbcore.Log)
    with pytest.raises(dbcore.ValidationError, match="is not a cursor this adapter returned"):
        keyset_statement(base, dbcore.Log, limit=10, after="not-a-cursor")
    with pytest.raises(dbcore.ValidationError, match="order='sideways'"):
        keyset_statement(base, dbcore.Log, limit=10, after=None, order="sideways")
    with pytest.raises(dbcore.ValidationError, match="limit=0 must be an int from 1 to 1000"):
        keyset_statement(base, dbcore.Log, limit=0, after=None)
    assert list(Page([1, 2], None)) == [1, 2]
