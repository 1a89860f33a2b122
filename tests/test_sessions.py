"""get_session(), the dependency generator, and the engine/sessionmaker cache, on every dialect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import dbcore
from dbcore.session import get_async_sessionmaker, get_sessionmaker
from tests.api_modes import Api, LoopRunner

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("body", sa.String(100), nullable=False),
)


def count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(notes)).scalar_one()


@pytest.fixture
def table(settings: dbcore.Settings) -> Engine:
    engine = dbcore.get_engine(settings)
    metadata.create_all(engine)
    return engine


def insert(note_id: int, body: str | None) -> Callable[[Session], None]:
    return lambda session: session.execute(notes.insert().values(id=note_id, body=body)) and None


def test_get_session_commits_on_success(api: Api, settings: dbcore.Settings, table: Engine) -> None:
    api.unit(settings, insert(1, "kept"))
    assert count(table) == 1


def test_get_session_rolls_back_on_exception(api: Api, settings: dbcore.Settings, table: Engine) -> None:
    api.unit(settings, insert(1, "first"))

    def fails(session: Session) -> None:
        insert(2, "lost")(session)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        api.unit(settings, fails)
    assert count(table) == 1


def test_database_error_inside_session_rolls_back_everything(
    api: Api, settings: dbcore.Settings, table: Engine
) -> None:
    def duplicate(session: Session) -> None:
        insert(1, "a")(session)
        insert(1, "duplicate")(session)

    with pytest.raises(dbcore.DuplicateKeyError):
        api.unit(settings, duplicate)
    assert count(table) == 0


def test_session_dependency_commits_when_exhausted(settings: dbcore.Settings, table: Engine) -> None:
    generator = dbcore.session_dependency(settings)
    session = next(generator)
    session.execute(notes.insert().values(id=7, body="via dependency"))
    with pytest.raises(StopIteration):
        next(generator)
    assert count(table) == 1


def test_session_dependency_rolls_back_on_thrown_exception(settings: dbcore.Settings, table: Engine) -> None:
    generator = dbcore.session_dependency(settings)
    session = next(generator)
    session.execute(notes.insert().values(id=8, body="handler fails"))
    with pytest.raises(ValueError):
        generator.throw(ValueError("request handler failed"))
    assert count(table) == 0


def test_async_session_dependency_commits_when_exhausted(
    aio: LoopRunner, settings: dbcore.Settings, table: Engine
) -> None:
    async def request() -> None:
        generator = dbcore.async_session_dependency(settings)
        session = await anext(generator)
        await session.execute(notes.insert().values(id=7, body="via dependency"))
        with pytest.raises(StopAsyncIteration):
            await anext(generator)

    aio.run(request())
    assert count(table) == 1


def test_async_session_dependency_rolls_back_on_thrown_exception(
    aio: LoopRunner, settings: dbcore.Settings, table: Engine
) -> None:
    async def request() -> None:
        generator = dbcore.async_session_dependency(settings)
        session = await anext(generator)
        await session.execute(notes.insert().values(id=8, body="handler fails"))
        with pytest.raises(ValueError):
            await generator.athrow(ValueError("request handler failed"))

    aio.run(request())
    assert count(table) == 0


def test_session_is_closed_after_block(api: Api, settings: dbcore.Settings, table: Engine) -> None:
    def work(session: Session) -> Session:
        insert(3, "x")(session)
        return session

    session = api.unit(settings, work)
    assert not session.in_transaction()
    assert api.engine(settings).pool.checkedout() == 0  # type: ignore[attr-defined]


def test_engines_and_sessionmakers_are_cached_per_url_and_disposable(settings: dbcore.Settings) -> None:
    assert dbcore.get_engine(settings) is dbcore.get_engine(settings)
    assert get_sessionmaker(settings) is get_sessionmaker(settings)
    first = dbcore.get_engine(settings)
    dbcore.dispose_engines()
    assert dbcore.get_engine(settings) is not first
    # The factory's engine is an execution_options() copy sharing the new engine's pool.
    assert get_sessionmaker(settings).kw["bind"].pool is dbcore.get_engine(settings).pool
    assert get_sessionmaker(settings, read_only=True).kw["bind"].pool is dbcore.get_engine(settings).pool


def test_async_engines_are_cached_per_url_and_event_loop(settings: dbcore.Settings) -> None:
    async def cached() -> tuple[object, object, object]:
        engine = dbcore.get_async_engine(settings)
        assert dbcore.get_async_engine(settings) is engine
        assert get_async_sessionmaker(settings) is get_async_sessionmaker(settings)
        assert get_async_sessionmaker(settings).kw["bind"].sync_engine.pool is engine.sync_engine.pool
        assert engine.url.drivername == settings.async_url.drivername
        await dbcore.dispose_async_engines()
        again = dbcore.get_async_engine(settings)
        assert again is not engine
        await dbcore.dispose_async_engines()
        return engine, again, asyncio.get_running_loop()

    first = LoopRunner()
    second = LoopRunner()
    try:
        engine_a, _, loop_a = first.run(cached())
        engine_b, _, loop_b = second.run(cached())
    finally:
        first.close()
        second.close()
    assert loop_a is not loop_b and engine_a is not engine_b


def test_run_in_transaction_returns_result_and_commits(api: Api, settings: dbcore.Settings, table: Engine) -> None:
    def work(session: Session) -> int:
        insert(11, "unit")(session)
        return 42

    assert api.run_in_transaction(work, settings) == 42
    assert count(table) == 1


def test_run_in_transaction_does_not_retry_permanent_errors(api: Api, settings: dbcore.Settings, table: Engine) -> None:
    calls = []

    def work(session: Session) -> None:
        calls.append(1)
        insert(1, None)(session)

    with pytest.raises(dbcore.NotNullViolation):
        api.run_in_transaction(work, settings)
    assert len(calls) == 1
    assert count(table) == 0


# --- an SQLite file that does not exist yet (issue 16 #7) ---------------------------------


def _refused_before_init(open_session: Callable[[], object], path: Path) -> str:
    with pytest.raises(dbcore.SchemaMissing) as caught:
        open_session()
    assert not path.exists()
    return str(caught.value)


def test_session_entry_points_refuse_a_missing_sqlite_file_without_creating_it(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "never_initialised.sqlite3"
    settings = dbcore.Settings(database_url=f"sqlite:///{path}")
    calls: list[Session] = []

    message = _refused_before_init(lambda: api.unit(settings, calls.append), path)
    assert message == (
        f"the SQLite database file {path} does not exist; run `dbcore init` (or `dbcore migrate`) "
        "to create it with dbcore's schema"
    )
    if api.is_async:
        dependency = dbcore.async_session_dependency(settings)
        assert _refused_before_init(lambda: api.run(anext(dependency)), path) == message
    else:
        assert _refused_before_init(lambda: next(dbcore.session_dependency(settings)), path) == message
    assert _refused_before_init(lambda: api.run_in_transaction(calls.append, settings), path) == message
    assert calls == []


def test_default_url_before_init_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "POSTGRES_URL"):
        monkeypatch.delenv(name, raising=False)

    def enter_get_session() -> None:
        with dbcore.get_session():
            pass

    message = _refused_before_init(enter_get_session, tmp_path / "dbcore.sqlite3")
    assert "dbcore.sqlite3 does not exist; run `dbcore init`" in message
    assert list(tmp_path.iterdir()) == []


def test_sqlite_file_made_by_the_engine_opens(tmp_path: Path) -> None:
    # What `dbcore init` does: the engine creates the file, then sessions open on it.
    settings = dbcore.Settings(database_url=f"sqlite:///{tmp_path / 'made.sqlite3'}")
    metadata.create_all(dbcore.get_engine(settings))
    with dbcore.get_session(settings) as session:
        session.execute(notes.insert().values(id=1, body="after init"))
    assert count(dbcore.get_engine(settings)) == 1


@pytest.mark.parametrize(
    "url",
    ["sqlite:///:memory:", "sqlite://", "sqlite:///file:{path}?mode=rwc&uri=true"],
    ids=["memory", "empty", "file-uri-rwc"],
)
def test_in_memory_and_file_uri_databases_are_not_refused(api: Api, tmp_path: Path, url: str) -> None:
    settings = dbcore.Settings(database_url=url.format(path=tmp_path / "uri.sqlite3"))
    assert api.unit(settings, lambda session: session.execute(sa.text("SELECT 1")).scalar_one()) == 1
