"""System tables can only be written by a session opened with the system API key.

Every check through a session or a bare dbcore connection runs both ways (the ``api``
fixture): ``get_session`` / the engine, and ``get_async_session`` / the async engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import dbcore
from dbcore import ActivityType, ApiKey, migrate
from dbcore.security import create_system_key, generate_api_key
from dbcore.vector_changes import target_table
from tests.api_modes import Api

ERROR_TYPE = uuid.UUID("FFFFFFFF-FFFF-FFFF-0000-FFFFFFFFFFFF")


@pytest.fixture
def system_key(migrated: dbcore.Settings) -> str:
    with dbcore.system_session(migrated) as session:
        return create_system_key(session)


def read_activity_types(session: Session) -> list[tuple[str, str]]:
    return [
        tuple(row)
        for row in session.execute(sa.select(ActivityType.name, ActivityType.description).order_by(ActivityType.name))
    ]


def snapshot(settings: dbcore.Settings) -> list[tuple[str, str]]:
    """The table as a sync session reads it: the check made after each write, whichever API wrote."""
    with dbcore.get_session(settings) as session:
        return read_activity_types(session)


def flushed(write: Callable[[Session], None]) -> Callable[[Session], None]:
    def work(session: Session) -> None:
        write(session)
        session.flush()

    return work


def orm_insert(session: Session) -> None:
    session.add(ActivityType(name="Sleeping", description="The agent rests."))


def orm_update(session: Session) -> None:
    session.get(ActivityType, ERROR_TYPE).description = "changed"  # type: ignore[union-attr]


def orm_delete(session: Session) -> None:
    session.delete(session.get(ActivityType, ERROR_TYPE))


def bulk_insert(session: Session) -> None:
    session.execute(sa.insert(ActivityType), [{"name": "Bulk", "description": "bulk"}])


def bulk_update(session: Session) -> None:
    session.execute(sa.update(ActivityType).values(description="bulk changed"))


def bulk_delete(session: Session) -> None:
    session.execute(sa.delete(ActivityType).where(ActivityType.id == ERROR_TYPE))


def core_table_update(session: Session) -> None:
    session.execute(ActivityType.__table__.update().values(description="core changed"))


WRITES: dict[str, Callable[[Session], None]] = {
    "insert": orm_insert,
    "update": orm_update,
    "delete": orm_delete,
    "bulk insert": bulk_insert,
    "bulk update": bulk_update,
    "bulk delete": bulk_delete,
    "core table update": core_table_update,
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_without_key_every_write_is_denied_and_nothing_changes(
    api: Api, migrated: dbcore.Settings, write: Callable[[Session], None]
) -> None:
    before = snapshot(migrated)
    with pytest.raises(dbcore.PermissionDenied, match="activity_types"):
        api.unit(migrated, flushed(write))
    assert snapshot(migrated) == before


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_wrong_key_is_denied_too(
    api: Api, migrated: dbcore.Settings, system_key: str, write: Callable[[Session], None]
) -> None:
    before = snapshot(migrated)
    wrong = system_key[:-4] + ("AAAA" if not system_key.endswith("AAAA") else "BBBB")  # same prefix, other key
    for key in (wrong, generate_api_key()):
        with pytest.raises(dbcore.PermissionDenied, match="not a valid system key"):
            api.unit(migrated, flushed(write), api_key=key)
    assert snapshot(migrated) == before


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_system_key_may_write(
    api: Api, migrated: dbcore.Settings, system_key: str, write: Callable[[Session], None]
) -> None:
    before = snapshot(migrated)
    api.unit(migrated, write, api_key=system_key)
    assert snapshot(migrated) != before


def test_reading_system_tables_is_open(api: Api, migrated: dbcore.Settings) -> None:
    assert [name for name, _ in api.unit(migrated, read_activity_types)] == ["Error", "Thinking", "Warning"]


def test_revoked_or_non_system_keys_do_not_grant(api: Api, migrated: dbcore.Settings) -> None:
    with dbcore.system_session(migrated) as session:
        revoked = create_system_key(session, name="old")
        key_row = session.execute(sa.select(ApiKey).where(ApiKey.name == "old")).scalar_one()
        key_row.revoked_at = dbcore.utcnow()
    before = snapshot(migrated)
    with pytest.raises(dbcore.PermissionDenied, match="not a valid system key"):
        api.unit(migrated, orm_insert, api_key=revoked)
    assert snapshot(migrated) == before


def test_only_the_hash_of_a_key_is_stored(api: Api, migrated: dbcore.Settings, system_key: str) -> None:
    stored = api.unit(migrated, lambda session: session.execute(sa.select(ApiKey.key_hash, ApiKey.prefix)).all())
    assert all(system_key not in (key_hash, prefix) for key_hash, prefix in stored)
    assert all(len(key_hash) == 64 for key_hash, _ in stored)


def test_non_system_tables_need_no_key(api: Api, migrated: dbcore.Settings) -> None:
    api.unit(migrated, lambda session: session.add(dbcore.User(email="ada@example.org", display_name="Ada")))
    count = sa.select(sa.func.count()).select_from(dbcore.User)
    assert api.unit(migrated, lambda session: session.execute(count).scalar_one()) == 1


# --- Core statements sent on a connection, past the Session's ORM hooks ---------------------

TABLE: sa.Table = ActivityType.__table__  # type: ignore[assignment]


def core_insert(connection: sa.Connection) -> None:
    connection.execute(sa.insert(TABLE).values(name=f"Core-{uuid.uuid4().hex[:8]}", description="core"))


def core_update(connection: sa.Connection) -> None:
    connection.execute(sa.update(ActivityType).values(description=f"core {uuid.uuid4().hex[:8]}"))  # the entity, too


def core_delete(connection: sa.Connection) -> None:
    connection.execute(sa.delete(TABLE).where(TABLE.c.id == ERROR_TYPE))


CORE_WRITES: dict[str, Callable[[sa.Connection], None]] = {
    "insert": core_insert,
    "update": core_update,
    "delete": core_delete,
}


def on_session_connection(write: Callable[[sa.Connection], None]) -> Callable[[Session], None]:
    return lambda session: write(session.connection())


def test_core_writes_on_a_session_connection_need_the_key(api: Api, migrated: dbcore.Settings, system_key: str) -> None:
    for name, write in CORE_WRITES.items():
        before = snapshot(migrated)
        with pytest.raises(dbcore.PermissionDenied, match="activity_types.*no API key was given"):
            api.unit(migrated, on_session_connection(write))
        assert snapshot(migrated) == before, name
        with pytest.raises(dbcore.PermissionDenied, match="not a valid system key"):
            api.unit(migrated, on_session_connection(write), api_key=generate_api_key())
        assert snapshot(migrated) == before, name

        api.unit(migrated, on_session_connection(write), api_key=system_key)
        assert snapshot(migrated) != before, name


def as_system(write: Callable[[sa.Connection], None]) -> Callable[[sa.Connection], None]:
    return lambda connection: write(connection.execution_options(dbcore_system=True))


def test_a_bare_dbcore_connection_needs_the_system_option(api: Api, migrated: dbcore.Settings) -> None:
    for name, write in CORE_WRITES.items():
        before = snapshot(migrated)
        with pytest.raises(dbcore.PermissionDenied, match="activity_types.*dbcore_system=True"):
            api.connect(migrated, write)
        with pytest.raises(dbcore.PermissionDenied, match="activity_types"):
            api.connect(migrated, write, begin=False)
        with pytest.raises(dbcore.PermissionDenied, match="activity_types"):
            api.connect(migrated, write, begin=False, isolation_level="SERIALIZABLE")
        assert snapshot(migrated) == before, name

        api.connect(migrated, as_system(write))
        assert snapshot(migrated) != before, name


def test_a_connection_given_back_by_a_system_session_is_guarded_again(api: Api, migrated: dbcore.Settings) -> None:
    before = snapshot(migrated)

    def lend(connection: sa.Connection) -> None:
        with dbcore.system_session(migrated) as system, Session(connection) as session:
            session.info.update(system.info)  # the same permission as a system session
            core_update(session.connection())
            session.commit()
        assert snapshot(migrated) != before
        with pytest.raises(dbcore.PermissionDenied, match="activity_types"):
            core_delete(connection)

    api.connect(migrated, lend, begin=False)


def test_a_foreign_engine_is_not_guarded(migrated: dbcore.Settings) -> None:
    """Sync only: the engine is SQLAlchemy's, not one of dbcore's APIs."""
    foreign = sa.create_engine(migrated.database_url)
    try:
        for name, write in CORE_WRITES.items():
            before = snapshot(migrated)
            with foreign.begin() as connection:
                write(connection)
            assert snapshot(migrated) != before, name
    finally:
        foreign.dispose()


def test_raw_sql_text_is_outside_the_guard(api: Api, migrated: dbcore.Settings) -> None:
    api.unit(
        migrated, lambda session: session.execute(sa.text("UPDATE activity_types SET description = 'raw'")) and None
    )
    assert {description for _, description in snapshot(migrated)} == {"raw"}


def test_migrations_may_write_system_tables(settings: dbcore.Settings) -> None:
    """Sync only (alembic is): alembic runs on a dbcore engine, so its connection carries ``dbcore_system=True`` (and gives a lent one back clean)."""
    seen: list[object] = []

    def record(
        _conn: sa.Connection, statement: object, _multi: object, _params: object, options: dict[str, object]
    ) -> None:
        if target_table(statement) == "alembic_version":
            seen.append(options.get("dbcore_system"))

    event.listen(Engine, "before_execute", record)
    try:
        migrate.upgrade(settings, "0001")  # on the engine env.py makes
        engine = dbcore.get_engine(settings)
        with engine.connect() as connection:
            command.upgrade(migrate.alembic_config(settings, connection=connection), "head")
            assert not connection.get_execution_options().get("dbcore_system")
    finally:
        event.remove(Engine, "before_execute", record)
    assert len(seen) >= 2 and all(flag is True for flag in seen)
