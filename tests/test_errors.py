"""DBAPI errors become dbcore's typed errors on every dialect, with the original chained."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import dbcore
from dbcore.errors import classify_dbapi_error

metadata = sa.MetaData()
parents = sa.Table("parents", metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False))
children = sa.Table(
    "children",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("parents.id"), nullable=False, index=True),
    sa.Column("label", sa.String(5), nullable=False),
)


@pytest.fixture
def tables(engine: Engine) -> Engine:
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(parents.insert().values(id=1))
    return engine


def rows(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_duplicate_key(tables: Engine) -> None:
    with pytest.raises(dbcore.DuplicateKeyError) as caught:
        with tables.begin() as connection:
            connection.execute(parents.insert().values(id=1))
    assert caught.value.orig is not None
    assert caught.value.__cause__ is not None
    assert isinstance(caught.value, dbcore.IntegrityViolation)
    assert rows(tables, parents) == 1


def test_foreign_key_violation_on_insert(tables: Engine) -> None:
    with pytest.raises(dbcore.ForeignKeyViolation):
        with tables.begin() as connection:
            connection.execute(children.insert().values(id=1, parent_id=999, label="x"))
    assert rows(tables, children) == 0


def test_foreign_key_violation_on_delete_of_referenced_row(tables: Engine) -> None:
    with tables.begin() as connection:
        connection.execute(children.insert().values(id=1, parent_id=1, label="x"))
    with pytest.raises(dbcore.ForeignKeyViolation):
        with tables.begin() as connection:
            connection.execute(parents.delete().where(parents.c.id == 1))
    assert rows(tables, parents) == 1


def test_not_null_violation(tables: Engine) -> None:
    with pytest.raises(dbcore.NotNullViolation):
        with tables.begin() as connection:
            connection.execute(children.insert().values(id=1, parent_id=1, label=None))
    assert rows(tables, children) == 0


def test_value_too_long_is_data_error_where_enforced(tables: Engine, dialect: str) -> None:
    if dialect == "sqlite":
        # SQLite does not enforce VARCHAR lengths (docs/dialects.md): the row is stored whole.
        with tables.begin() as connection:
            connection.execute(children.insert().values(id=1, parent_id=1, label="far too long"))
        assert rows(tables, children) == 1
        return
    with pytest.raises(dbcore.DataError):
        with tables.begin() as connection:
            connection.execute(children.insert().values(id=1, parent_id=1, label="far too long"))
    assert rows(tables, children) == 0


def test_connection_refused_is_connection_failed() -> None:
    settings = dbcore.Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", connect_timeout=2)
    engine = dbcore.create_engine(settings)
    try:
        with pytest.raises(dbcore.ConnectionFailed) as caught:
            with engine.connect():
                pass
        assert caught.value.transient
    finally:
        engine.dispose()


class _FakeOdbcError(Exception):
    """Shaped like pyodbc.Error: args are (SQLSTATE, message)."""


@pytest.mark.compile_only
@pytest.mark.parametrize(
    ("state", "message", "expected"),
    [
        ("23000", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of PRIMARY KEY constraint 'pk_t'. (2627) (SQLExecDirectW)", dbcore.DuplicateKeyError),
        ("23000", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot insert duplicate key row in object 'dbo.t' with unique index 'ix'. (2601) (SQLExecDirectW)", dbcore.DuplicateKeyError),
        ("23000", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The INSERT statement conflicted with the FOREIGN KEY constraint \"fk\". (547) (SQLExecDirectW)", dbcore.ForeignKeyViolation),
        ("23000", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The INSERT statement conflicted with the CHECK constraint \"ck\". (547) (SQLExecDirectW)", dbcore.CheckViolation),
        ("23000", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot insert the value NULL into column 'x'. (515) (SQLExecDirectW)", dbcore.NotNullViolation),
        ("22001", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]String or binary data would be truncated. (8152) (SQLExecDirectW)", dbcore.DataError),
        ("40001", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction (Process ID 52) was deadlocked. (1205) (SQLExecDirectW)", dbcore.ConcurrencyError),
        ("08001", "[Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: Error code 0x2749 (10049) (SQLDriverConnect)", dbcore.ConnectionFailed),
    ],
)
def test_mssql_error_numbers_are_classified(state: str, message: str, expected: type) -> None:
    # SQL Server is not reachable here; this checks the parser on the driver's message format.
    # The live path runs in GitHub Actions and wherever DBCORE_TEST_MSSQL_URL is set.
    error = classify_dbapi_error("mssql", _FakeOdbcError(state, message))
    assert type(error) is expected
