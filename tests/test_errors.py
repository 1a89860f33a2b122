"""DBAPI errors become dbcore's typed errors on every dialect, with the original chained.

What a unit of work raises is checked both ways (the ``api`` fixture): the same typed
error, unwrapped, from ``get_session`` / the engine and from ``get_async_session`` /
the async engine, and nothing written.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import dbcore
from dbcore.errors import StatementTarget, classify_dbapi_error, describe_dbapi_error
from dbcore.testing import TestServers
from tests.api_modes import Api
from tests.conftest import server_url

from .bad_inputs.harness import check_message, column_named

metadata = sa.MetaData()
parents = sa.Table("parents", metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False))
children = sa.Table(
    "children",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("parents.id"), nullable=False, index=True),
    sa.Column("label", sa.String(5), nullable=False),
)


class _Base(DeclarativeBase):
    metadata = metadata


class Child(_Base):
    __table__ = children


@pytest.fixture
def tables(engine: Engine) -> Engine:
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(parents.insert().values(id=1))
    return engine


def rows(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def execute(statement: sa.Executable) -> Callable[[Session], None]:
    return lambda session: session.execute(statement) and None


def test_duplicate_key(api: Api, settings: dbcore.Settings, tables: Engine) -> None:
    with pytest.raises(dbcore.DuplicateKeyError) as caught:
        api.unit(settings, execute(parents.insert().values(id=1)))
    assert type(caught.value) is dbcore.DuplicateKeyError
    assert str(caught.value).startswith(f"DuplicateKeyError on {tables.dialect.name}: ")
    assert caught.value.orig is not None
    assert caught.value.__cause__ is not None
    assert isinstance(caught.value, dbcore.IntegrityViolation)
    assert rows(tables, parents) == 1


def test_foreign_key_violation_on_insert(api: Api, settings: dbcore.Settings, tables: Engine) -> None:
    with pytest.raises(dbcore.ForeignKeyViolation) as caught:
        api.unit(settings, execute(children.insert().values(id=1, parent_id=999, label="x")))
    assert type(caught.value) is dbcore.ForeignKeyViolation
    assert rows(tables, children) == 0


def test_foreign_key_violation_on_delete_of_referenced_row(api: Api, settings: dbcore.Settings, tables: Engine) -> None:
    with tables.begin() as connection:
        connection.execute(children.insert().values(id=1, parent_id=1, label="x"))
    with pytest.raises(dbcore.ForeignKeyViolation) as caught:
        api.unit(settings, execute(parents.delete().where(parents.c.id == 1)))
    assert type(caught.value) is dbcore.ForeignKeyViolation
    assert rows(tables, parents) == 1


def test_not_null_violation(api: Api, settings: dbcore.Settings, tables: Engine) -> None:
    with pytest.raises(dbcore.NotNullViolation) as caught:
        api.unit(settings, execute(children.insert().values(id=1, parent_id=1, label=None)))
    assert type(caught.value) is dbcore.NotNullViolation
    assert rows(tables, children) == 0


def test_value_too_long_is_data_error_where_enforced(
    api: Api, settings: dbcore.Settings, tables: Engine, dialect: str
) -> None:
    too_long = execute(children.insert().values(id=1, parent_id=1, label="far too long"))
    if dialect == "sqlite":
        # SQLite does not enforce VARCHAR lengths (docs/dialects.md): the row is stored whole.
        api.unit(settings, too_long)
        assert rows(tables, children) == 1
        return
    with pytest.raises(dbcore.DataError) as caught:
        api.unit(settings, too_long)
    assert type(caught.value) is dbcore.DataError
    assert rows(tables, children) == 0


def test_connection_refused_is_connection_failed(api: Api) -> None:
    settings = dbcore.Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", connect_timeout=2)
    with pytest.raises(dbcore.ConnectionFailed) as caught:
        api.unit(settings, execute(sa.text("SELECT 1")))
    assert type(caught.value) is dbcore.ConnectionFailed
    assert str(caught.value).startswith("ConnectionFailed on postgresql: ")
    assert caught.value.transient


class _FakeOdbcError(Exception):
    """Shaped like pyodbc.Error: args are (SQLSTATE, message)."""


@pytest.mark.compile_only
@pytest.mark.parametrize(
    ("state", "message", "expected"),
    [
        (
            "23000",
            "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of PRIMARY KEY constraint 'pk_t'. (2627) (SQLExecDirectW)",
            dbcore.DuplicateKeyError,
        ),
        (
            "23000",
            "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot insert duplicate key row in object 'dbo.t' with unique index 'ix'. (2601) (SQLExecDirectW)",
            dbcore.DuplicateKeyError,
        ),
        (
            "23000",
            '[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The INSERT statement conflicted with the FOREIGN KEY constraint "fk". (547) (SQLExecDirectW)',
            dbcore.ForeignKeyViolation,
        ),
        (
            "23000",
            '[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The INSERT statement conflicted with the CHECK constraint "ck". (547) (SQLExecDirectW)',
            dbcore.CheckViolation,
        ),
        (
            "23000",
            "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot insert the value NULL into column 'x'. (515) (SQLExecDirectW)",
            dbcore.NotNullViolation,
        ),
        (
            "22001",
            "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]String or binary data would be truncated. (8152) (SQLExecDirectW)",
            dbcore.DataError,
        ),
        (
            "40001",
            "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction (Process ID 52) was deadlocked. (1205) (SQLExecDirectW)",
            dbcore.ConcurrencyError,
        ),
        (
            "08001",
            "[Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: Error code 0x2749 (10049) (SQLDriverConnect)",
            dbcore.ConnectionFailed,
        ),
        (
            "42S02",
            "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object name 'agents'. (208) (SQLExecDirectW)",
            dbcore.SchemaMissing,
        ),
        (
            "42000",
            '[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot open database "nosuchdb" requested by the login. The login failed. (4060) (SQLDriverConnect)',
            dbcore.DatabaseNotFound,
        ),
        (
            "28000",
            "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user 'sa'. (18456) (SQLDriverConnect)",
            dbcore.AuthenticationFailed,
        ),
    ],
)
def test_mssql_error_numbers_are_classified(state: str, message: str, expected: type) -> None:
    # SQL Server is not reachable here; this checks the parser on the driver's message format.
    # The live path runs in GitHub Actions and wherever DBCORE_TEST_MSSQL_URL is set.
    error = classify_dbapi_error("mssql", _FakeOdbcError(state, message))
    assert type(error) is expected


# --- messages name table.column, on every dialect and every way of writing -------------------

# Each writes ``rows`` in one unit, sync or async: an ORM flush in a session, or INSERTs
# (one per row, or one executemany) on a bare connection of the dbcore engine.
Write = Callable[[Api, dbcore.Settings, list[dict[str, object]]], None]


def _orm_flush(api: Api, settings: dbcore.Settings, rows: list[dict[str, object]]) -> None:
    api.unit(settings, lambda session: session.add_all([Child(**row) for row in rows]))


def _core_insert(api: Api, settings: dbcore.Settings, rows: list[dict[str, object]]) -> None:
    def insert(connection: sa.Connection) -> None:
        for row in rows:
            connection.execute(children.insert().values(**row))

    api.connect(settings, insert)


def _executemany(api: Api, settings: dbcore.Settings, rows: list[dict[str, object]]) -> None:
    api.connect(settings, lambda connection: connection.execute(children.insert(), rows) and None)


WRITES = [pytest.param(write, id=write.__name__.lstrip("_")) for write in (_orm_flush, _core_insert, _executemany)]
GOOD_ROW: dict[str, object] = {"id": 1, "parent_id": 1, "label": "ok"}


@pytest.mark.parametrize("write", WRITES)
def test_not_null_message_names_table_and_column(
    api: Api, settings: dbcore.Settings, tables: Engine, write: Write
) -> None:
    with pytest.raises(dbcore.NotNullViolation) as caught:
        write(api, settings, [GOOD_ROW, {"id": 2, "parent_id": 1, "label": None}])
    check_message(caught.value, column_named("children", "label"))
    assert rows(tables, children) == 0


@pytest.mark.parametrize("write", WRITES)
def test_duplicate_primary_key_message_names_table_and_column(
    api: Api, settings: dbcore.Settings, tables: Engine, write: Write
) -> None:
    with pytest.raises(dbcore.DuplicateKeyError) as caught:
        write(api, settings, [GOOD_ROW, {**GOOD_ROW, "label": "twin"}])
    message = check_message(caught.value, r"children\.id\b|\"children_pkey\"")
    assert "twin" not in message
    assert rows(tables, children) == 0


@pytest.mark.parametrize("write", WRITES)
def test_foreign_key_to_missing_row_message_names_column(
    api: Api, settings: dbcore.Settings, tables: Engine, write: Write
) -> None:
    with pytest.raises(dbcore.ForeignKeyViolation) as caught:
        write(api, settings, [GOOD_ROW, {"id": 2, "parent_id": 999, "label": "x"}])
    check_message(caught.value, column_named("children", "parent_id"))
    assert rows(tables, children) == 0


def test_foreign_key_on_update_message_names_column(api: Api, settings: dbcore.Settings, tables: Engine) -> None:
    with tables.begin() as connection:
        connection.execute(children.insert().values(GOOD_ROW))

    def repoint(session: Session) -> None:
        session.get_one(Child, 1).parent_id = 999

    with pytest.raises(dbcore.ForeignKeyViolation) as caught:
        api.unit(settings, repoint)
    check_message(caught.value, column_named("children", "parent_id"))
    with tables.connect() as connection:
        assert connection.execute(sa.select(children.c.parent_id)).scalar_one() == 1


def test_foreign_key_on_delete_message_names_referencing_column(
    api: Api, settings: dbcore.Settings, tables: Engine
) -> None:
    with tables.begin() as connection:
        connection.execute(children.insert().values(GOOD_ROW))
    with pytest.raises(dbcore.ForeignKeyViolation) as caught:
        api.unit(settings, execute(parents.delete().where(parents.c.id == 1)))
    check_message(caught.value, column_named("children", "parent_id"))
    assert rows(tables, parents) == 1


# --- the message builders, on the drivers' exact wording ---------------------------------

AGENTS_INSERT = StatementTarget(
    table="agents",
    verb="insert",
    columns=("id", "name", "owner_id"),
    primary_key=("id",),
    foreign_keys=("owner_id",),
    given=("id", "name", "owner_id"),
)
MEMORIES_INSERT = StatementTarget(
    table="memories",
    verb="insert",
    columns=("id", "agent_id", "room_id", "parent_id"),
    primary_key=("id",),
    foreign_keys=("agent_id", "room_id", "parent_id"),
    given=("id", "agent_id", "room_id"),
)
AGENTS_DELETE = StatementTarget(
    table="agents",
    verb="delete",
    columns=("id",),
    primary_key=("id",),
    referenced_by=("entities.agent_id", "memories.agent_id"),
)


@pytest.mark.parametrize(
    ("kind", "dialect", "driver", "target", "expected"),
    [
        (
            dbcore.NotNullViolation,
            "mysql",
            "Column 'name' cannot be null",
            AGENTS_INSERT,
            "NotNullViolation on mysql: agents.name cannot be null",
        ),
        (
            dbcore.NotNullViolation,
            "mariadb",
            "Field 'name' doesn't have a default value",
            AGENTS_INSERT,
            "NotNullViolation on mariadb: agents.name doesn't have a default value",
        ),
        (
            dbcore.DataError,
            "mysql",
            "Data too long for column 'name' at row 1",
            AGENTS_INSERT,
            "DataError on mysql: Data too long for agents.name at row 1",
        ),
        (
            dbcore.NotNullViolation,
            "mysql",
            "Column 'colour' cannot be null",
            AGENTS_INSERT,
            "NotNullViolation on mysql: Column 'colour' cannot be null",
        ),
        (
            dbcore.DuplicateKeyError,
            "mysql",
            "Duplicate entry 'it's' for key 'PRIMARY'",
            AGENTS_INSERT,
            "DuplicateKeyError on mysql: duplicate primary key agents.id",
        ),
        (
            dbcore.DuplicateKeyError,
            "mysql",
            "Duplicate entry 'me@example.com' for key 'users.uq_users_email'",
            StatementTarget(table="users", verb="insert"),
            "DuplicateKeyError on mysql: duplicate value for unique key uq_users_email of users",
        ),
        (
            dbcore.ForeignKeyViolation,
            "mysql",
            "Cannot add or update a child row: a foreign key constraint fails (`db`.`agents`, CONSTRAINT `fk_a` "
            "FOREIGN KEY (`owner_id`) REFERENCES `users` (`id`))",
            None,
            "ForeignKeyViolation on mysql: agents.owner_id refers to a missing users row (constraint fk_a)",
        ),
        (
            dbcore.ForeignKeyViolation,
            "mysql",
            "Cannot delete or update a parent row: a foreign key constraint fails (`db`.`pairs`, CONSTRAINT `fk_p` "
            "FOREIGN KEY (`a`, `b`) REFERENCES `agents` (`x`, `y`))",
            None,
            "ForeignKeyViolation on mysql: a row of agents is still referenced by pairs.a, pairs.b (constraint fk_p)",
        ),
        (
            dbcore.ForeignKeyViolation,
            "sqlite",
            "FOREIGN KEY constraint failed",
            AGENTS_INSERT,
            "ForeignKeyViolation on sqlite: agents.owner_id refers to a missing row",
        ),
        (
            dbcore.ForeignKeyViolation,
            "sqlite",
            "FOREIGN KEY constraint failed",
            MEMORIES_INSERT,
            "ForeignKeyViolation on sqlite: one of memories.agent_id, memories.room_id refers to a missing row",
        ),
        (
            dbcore.ForeignKeyViolation,
            "sqlite",
            "FOREIGN KEY constraint failed",
            AGENTS_DELETE,
            "ForeignKeyViolation on sqlite: a deleted row of agents is still referenced by entities.agent_id, "
            "memories.agent_id",
        ),
        (
            dbcore.ForeignKeyViolation,
            "sqlite",
            "FOREIGN KEY constraint failed",
            None,
            "ForeignKeyViolation on sqlite: FOREIGN KEY constraint failed",
        ),
        (
            dbcore.DuplicateKeyError,
            "mysql",
            "Duplicate entry '1' for key 'PRIMARY'",
            None,
            "DuplicateKeyError on mysql: Duplicate entry '1' for key 'PRIMARY'",
        ),
    ],
)
def test_message_names_table_column_from_the_statement(
    kind: type[dbcore.DatabaseError], dialect: str, driver: str, target: StatementTarget | None, expected: str
) -> None:
    # Without a statement (target None) the driver's words are kept as they are.
    assert describe_dbapi_error(kind, dialect, driver, target) == expected


def test_sqlite_update_that_sets_no_foreign_key_names_the_referencing_columns() -> None:
    target = StatementTarget(
        table="agents",
        verb="update",
        columns=("id", "owner_id"),
        foreign_keys=("owner_id",),
        given=("id",),
        referenced_by=("entities.agent_id",),
    )
    message = describe_dbapi_error(dbcore.ForeignKeyViolation, "sqlite", "FOREIGN KEY constraint failed", target)
    assert message == "ForeignKeyViolation on sqlite: a changed row of agents is still referenced by entities.agent_id"


class _FakePyMySQLError(Exception):
    """Shaped like pymysql's errors: args are (errno, message)."""


def test_mysql_message_is_the_server_text_not_the_args_tuple() -> None:
    error = classify_dbapi_error("mysql", _FakePyMySQLError(1048, "Column 'name' cannot be null"), target=AGENTS_INSERT)
    assert str(error) == "NotNullViolation on mysql: agents.name cannot be null"


# --- a connection the server refuses for good, and a schema never created (issue 16 #4, #7) ---

REFUSED_SECRET = "wrong-pw-16secret"


def _refused_settings(servers: TestServers, dialect: str, **parts: str) -> dbcore.Settings:
    url = server_url(servers, dialect).set(**parts)  # type: ignore[arg-type]
    return dbcore.Settings(database_url=url.render_as_string(hide_password=False), retry_max_seconds=20)


def _gives_up_at_once(api: Api, settings: dbcore.Settings, expected: type[dbcore.DbcoreError]) -> str:
    """run_in_transaction (sync or async) raises ``expected`` after one attempt; returns the message."""
    attempts = []

    def work(session: Session) -> None:
        attempts.append(1)
        session.execute(sa.text("SELECT 1"))

    started = time.monotonic()
    try:
        with pytest.raises(expected) as caught:
            api.run_in_transaction(work, settings)
    finally:
        api.dispose_engines()
    assert len(attempts) == 1
    assert time.monotonic() - started < 2
    assert type(caught.value) is expected
    assert not caught.value.transient
    return str(caught.value)


@pytest.mark.parametrize(
    "dialect",
    [pytest.param("postgresql", marks=pytest.mark.postgresql), pytest.param("mariadb", marks=pytest.mark.mariadb)],
)
def test_missing_database_says_so_and_is_not_retried(api: Api, servers: TestServers, dialect: str) -> None:
    message = _gives_up_at_once(
        api, _refused_settings(servers, dialect, database="nosuchdb16"), dbcore.DatabaseNotFound
    )
    assert "nosuchdb16" in message
    assert "\n" not in message


@pytest.mark.mariadb
def test_wrong_password_says_access_denied_and_is_not_retried(api: Api, servers: TestServers) -> None:
    settings = _refused_settings(servers, "mariadb", username="root", password=REFUSED_SECRET)
    message = _gives_up_at_once(api, settings, dbcore.AuthenticationFailed)
    assert "Access denied" in message
    assert REFUSED_SECRET not in message


@pytest.mark.postgresql
def test_unknown_role_is_authentication_failed(api: Api, servers: TestServers) -> None:
    message = _gives_up_at_once(
        api, _refused_settings(servers, "postgresql", username="nobody16"), dbcore.AuthenticationFailed
    )
    assert 'role "nobody16" does not exist' in message


class _UserBase(DeclarativeBase):
    """A project's own models, on their own base: their tables are not dbcore's."""


class UserNote(_UserBase):
    __tablename__ = "user_notes_16"
    id: Mapped[int] = mapped_column(primary_key=True)


def _missing_table_message(api: Api, settings: dbcore.Settings, model: type) -> str:
    """The SchemaMissing message of a query on ``model`` in an existing database without its table."""
    engine = dbcore.get_engine(settings)
    engine.connect().close()  # the database exists (on SQLite, the file), its schema does not
    try:
        with pytest.raises(dbcore.SchemaMissing) as caught:
            api.unit(settings, lambda session: session.scalars(sa.select(model)).all())
    finally:
        api.dispose_engines()
    message = str(caught.value)
    assert type(caught.value) is dbcore.SchemaMissing
    assert "SELECT" not in message.upper()
    return message


def test_query_before_init_says_the_schema_is_missing(api: Api, settings: dbcore.Settings) -> None:
    from dbcore.DB_Agents import Agent

    message = _missing_table_message(api, settings, Agent)
    assert message.startswith(f"SchemaMissing on {settings.dialect}: table agents does not exist; ")
    assert "run `dbcore init` (or `dbcore migrate`) to create dbcore's schema" in message


def test_missing_user_table_asks_for_the_projects_migrations_not_dbcore_init(
    api: Api, settings: dbcore.Settings
) -> None:
    message = _missing_table_message(api, settings, UserNote)
    assert message == (
        f"SchemaMissing on {settings.dialect}: table user_notes_16 does not exist; "
        "it is not one of dbcore's tables: run your project's migrations to create it"
    )


def test_missing_table_the_server_does_not_name_gets_both_remedies() -> None:
    message = describe_dbapi_error(dbcore.SchemaMissing, "sqlite", "no such table", None, {"agents"})
    assert message == (
        "SchemaMissing on sqlite: a table the query uses does not exist; run `dbcore init` (or `dbcore migrate`) "
        "if it is one of dbcore's, else your project's migrations"
    )
