"""dbcore's session hooks act on dbcore engines only, and on every session of one.

The listeners in :mod:`dbcore.hooks` sit on SQLAlchemy's ``Session`` class, so they
see every session in the process. This file proves, on every live dialect:

A. a ``Session`` on a *foreign* engine (a plain ``sqlalchemy.create_engine`` on the
   same database) is left alone: it may write system tables without a key, sees
   soft-deleted rows, writes no outbox markers, bumps no embedding version, fires no
   post-commit hook and gets SQLAlchemy's own errors; a foreign application's models
   (even ones reusing dbcore's mixins) work normally;
B. a ``Session(dbcore.get_engine(settings))`` built by hand gets every guarantee of
   ``get_session``: the system-table guard (flushes and bulk statements, nothing
   written after a refusal), the soft-delete filter, outbox markers and the embedding
   version in the same transaction (rolled back with it), post-commit hooks after
   COMMIT only, and dbcore's typed errors.

Each check is made against both kinds of session on the same database, so a hook
that acted everywhere, or nowhere, fails it.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import dbcore
from dbcore import ActivityType, Memory, MemoryEmbedding, MemoryKind, User, hooks
from dbcore.base import Base
from dbcore.DB_Memories import EMBEDDING_DIMS, VectorOutbox
from dbcore.events import remove_hooks
from dbcore.testing import add_memory_parents
from dbcore.vector_changes import embedding_version
from tests.api_modes import Api

T = TypeVar("T")

# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
def foreign(migrated: dbcore.Settings) -> Iterator[Engine]:
    """A plain SQLAlchemy engine on the migrated database: dbcore never saw it."""
    engine = sa.create_engine(migrated.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def ours(migrated: dbcore.Settings) -> Engine:
    """dbcore's engine for the migrated database (integrated vector store: no outbox)."""
    return dbcore.get_engine(migrated)


@pytest.fixture
def outbox_engine(migrated: dbcore.Settings) -> Iterator[Engine]:
    """A dbcore engine configured for an external vector store: it writes outbox markers.

    Commits do not push them (tests/test_vector_push.py covers that), so they stay to be looked at.
    """
    engine = dbcore.create_engine(dataclasses.replace(migrated, vector_backend="chroma", vector_push_on_commit=False))
    yield engine
    engine.dispose()


@pytest.fixture
def saved_users() -> Iterator[list[tuple[str, str]]]:
    """What an ``on_saved(User)`` hook was called with."""
    calls: list[tuple[str, str]] = []

    def hook(user: User, action: str) -> None:
        calls.append((user.email, action))

    dbcore.on_saved(User)(hook)
    try:
        yield calls
    finally:
        remove_hooks(hook)


def scalar(engine: Engine, query: sa.Select[Any]) -> Any:
    """Run a Core query on a fresh connection (no session, so no session hook is involved)."""
    with engine.connect() as connection:
        return connection.execute(query).scalar()


def activity_types(engine: Engine) -> list[tuple[str, str]]:
    table = ActivityType.__table__
    with engine.connect() as connection:
        query = sa.select(table.c.name, table.c.description).order_by(table.c.name)
        return [(name, description) for name, description in connection.execute(query)]


def markers(engine: Engine) -> list[tuple[str, str]]:
    table = VectorOutbox.__table__
    with engine.connect() as connection:
        return sorted(
            (str(memory_id), op) for memory_id, op in connection.execute(sa.select(table.c.memory_id, table.c.op))
        )


def add_bare_memories(engine: Engine, count: int) -> list[uuid.UUID]:
    """Commit ``count`` memories without embeddings (a new memory needs no outbox marker)."""
    with Session(engine) as session:
        parents = add_memory_parents(session, name=f"hooks-{uuid.uuid4().hex[:8]}")
        made = [
            Memory(
                agent_id=parents["agent_id"],
                entity_id=parents["entity_id"],
                room_id=parents["room_ids"][0],
                kind=MemoryKind.MESSAGE,
                content={"i": i},
            )
            for i in range(count)
        ]
        session.add_all(made)
        session.commit()
        return [memory.id for memory in made]


def memory_content(engine: Engine, memory_id: uuid.UUID) -> Any:
    table = Memory.__table__
    return scalar(engine, sa.select(table.c.content).where(table.c.id == memory_id))


def current_version(engine: Engine) -> int:
    with engine.connect() as connection:
        return embedding_version(connection)


# --- writes to a system table (activity_types is seeded with Error, Thinking, Warning) ----


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def flush_insert(session: Session) -> None:
    session.add(ActivityType(name=unique("flush"), description="added by a flush"))


def flush_update(session: Session) -> None:
    row = session.scalars(sa.select(ActivityType).where(ActivityType.name == "Thinking")).one()
    row.description = unique("changed by a flush")


def flush_delete(session: Session) -> None:
    session.delete(session.scalars(sa.select(ActivityType).where(ActivityType.name == "Warning")).one())


def bulk_insert(session: Session) -> None:
    session.execute(sa.insert(ActivityType), [{"name": unique("bulk"), "description": "added in bulk"}])


def bulk_update(session: Session) -> None:
    session.execute(sa.update(ActivityType).values(description=unique("changed in bulk")))


def bulk_delete(session: Session) -> None:
    session.execute(sa.delete(ActivityType).where(ActivityType.name == "Error"))


SYSTEM_WRITES: dict[str, Callable[[Session], None]] = {
    "flush insert": flush_insert,
    "flush update": flush_update,
    "flush delete": flush_delete,
    "bulk insert": bulk_insert,
    "bulk update": bulk_update,
    "bulk delete": bulk_delete,
}


# --- memory changes that need an outbox marker, and the marker's op ---------------------


def change_by_flush(session: Session, memory_id: uuid.UUID) -> None:
    memory = session.get(Memory, memory_id)
    assert memory is not None
    memory.content = {"changed": True}


def delete_by_flush(session: Session, memory_id: uuid.UUID) -> None:
    session.delete(session.get(Memory, memory_id))


def change_in_bulk(session: Session, memory_id: uuid.UUID) -> None:
    session.execute(sa.update(Memory).where(Memory.id == memory_id).values(content={"changed": True}))


def delete_in_bulk(session: Session, memory_id: uuid.UUID) -> None:
    session.execute(sa.delete(Memory).where(Memory.id == memory_id))


MEMORY_WRITES: dict[str, tuple[Callable[[Session, uuid.UUID], None], str]] = {
    "flush update": (change_by_flush, "upsert"),
    "flush delete": (delete_by_flush, "delete"),
    "bulk update": (change_in_bulk, "upsert"),
    "bulk delete": (delete_in_bulk, "delete"),
}
EXPECTED_CONTENT = {"upsert": {"changed": True}, "delete": None}


# --- A and B side by side: the same work through a foreign and a dbcore session ------------


def test_system_table_guard_refuses_dbcore_sessions_only(ours: Engine, foreign: Engine) -> None:
    for name, write in SYSTEM_WRITES.items():
        before = activity_types(ours)
        with Session(ours) as session:
            with pytest.raises(dbcore.PermissionDenied, match="activity_types"):
                write(session)
                session.flush()
        assert activity_types(ours) == before, f"{name}: a refused write changed the table"

        with Session(foreign) as session:
            write(session)
            session.commit()
        assert activity_types(ours) != before, f"{name}: the foreign session's write did not land"


def by_hand(api: Api, settings: dbcore.Settings, work: Callable[[Session], T]) -> T:
    """``work(session)`` in a session built by hand on dbcore's engine, then COMMIT.

    ``Session(dbcore.get_engine(settings))``, or in async mode
    ``AsyncSession(dbcore.get_async_engine(settings))`` with ``work`` run through ``run_sync``.
    """
    if not api.is_async:
        with Session(dbcore.get_engine(settings)) as session:
            result = work(session)
            session.commit()
            return result

    async def built() -> T:
        async with AsyncSession(dbcore.get_async_engine(settings)) as session:
            result = await session.run_sync(work)
            await session.commit()
            return result

    return api.run(built())


def test_soft_deleted_rows_are_hidden_from_dbcore_sessions_only(
    api: Api, migrated: dbcore.Settings, foreign: Engine
) -> None:
    """Both ways: a session built by hand on dbcore's (async) engine, and get_session / get_async_session."""

    def add(session: Session) -> uuid.UUID:
        live, gone = User(email="live@example.org"), User(email="gone@example.org")
        session.add_all([live, gone])
        session.flush()
        gone.soft_delete()
        return gone.id

    gone_id = by_hand(api, migrated, add)

    def seen(**options: Any) -> Callable[[Session], tuple[set[str], bool]]:
        def look(session: Session) -> tuple[set[str], bool]:
            emails = set(session.scalars(sa.select(User.email).execution_options(**options)))
            emails |= {user.email for user in session.scalars(sa.select(User).execution_options(**options))}
            found = session.get(User, gone_id, execution_options=options) is not None
            return emails, found

        return look

    both = {"live@example.org", "gone@example.org"}
    with Session(foreign) as session:
        assert seen()(session) == (both, True)
    assert by_hand(api, migrated, seen()) == ({"live@example.org"}, False)
    assert by_hand(api, migrated, seen(include_deleted=True)) == (both, True)
    assert api.unit(migrated, seen()) == ({"live@example.org"}, False)
    assert api.unit(migrated, seen(include_deleted=True)) == (both, True)


def test_outbox_markers_are_written_by_dbcore_sessions_only(outbox_engine: Engine, foreign: Engine) -> None:
    for name, (write, op) in MEMORY_WRITES.items():
        theirs, mine = add_bare_memories(outbox_engine, 2)
        before = markers(outbox_engine)

        with Session(foreign) as session:
            write(session, theirs)
            session.commit()
        assert memory_content(outbox_engine, theirs) == EXPECTED_CONTENT[op], f"{name}: foreign write did not land"
        assert markers(outbox_engine) == before, f"{name}: a foreign session wrote outbox markers"

        with Session(outbox_engine) as session:
            write(session, mine)
            session.commit()
        assert memory_content(outbox_engine, mine) == EXPECTED_CONTENT[op]
        assert markers(outbox_engine) == sorted([*before, (str(mine), op)]), name


def test_post_commit_hooks_fire_for_dbcore_sessions_only(
    ours: Engine, foreign: Engine, saved_users: list[tuple[str, str]]
) -> None:
    with Session(foreign) as session:
        user = User(email="foreign@example.org")
        session.add(user)
        session.commit()
        user.display_name = "Foreign"
        session.commit()
        session.delete(user)
        session.commit()
    assert saved_users == []

    with Session(ours) as session:
        user = User(email="ours@example.org")
        session.add(user)
        session.commit()
        user.display_name = "Ours"
        session.commit()
        session.delete(user)
        session.commit()
    assert saved_users == [("ours@example.org", action) for action in ("insert", "update", "delete")]


def test_post_commit_hooks_wait_for_commit_and_skip_rollbacks(ours: Engine, saved_users: list[tuple[str, str]]) -> None:
    with Session(ours) as session:
        session.add(User(email="rolled-back@example.org"))
        session.flush()
        session.rollback()
        session.add(User(email="kept@example.org"))
        session.flush()
        assert saved_users == []  # flushed, not committed
        session.commit()
        assert saved_users == [("kept@example.org", "insert")]
    with Session(ours) as session:  # closed without COMMIT: nothing fires, nothing leaks
        session.add(User(email="closed@example.org"))
        session.flush()
    with Session(ours) as session:
        session.commit()
    assert saved_users == [("kept@example.org", "insert")]


def test_typed_errors_on_dbcore_sessions_only(ours: Engine, foreign: Engine) -> None:
    with Session(ours) as session:
        session.add(User(email="taken@example.org"))
        session.commit()
    users = User.__table__

    with Session(ours) as session:
        session.add(User(email="taken@example.org"))
        with pytest.raises(dbcore.DuplicateKeyError) as caught:
            session.commit()
    assert isinstance(caught.value.__cause__, Exception)  # the driver's error, chained

    with Session(foreign) as session:
        session.add(User(email="taken@example.org"))
        with pytest.raises(sa.exc.IntegrityError) as raw:
            session.commit()
    assert not isinstance(raw.value, dbcore.DbcoreError)
    assert scalar(ours, sa.select(sa.func.count()).select_from(users)) == 1


# --- B: the transaction a hand-made dbcore session's bookkeeping lives in ---------------------


def test_outbox_markers_commit_and_roll_back_with_the_change(outbox_engine: Engine) -> None:
    rolled_back, committed = add_bare_memories(outbox_engine, 2)
    before = markers(outbox_engine)
    table = VectorOutbox.__table__

    with Session(outbox_engine) as session:
        change_by_flush(session, rolled_back)
        session.flush()
        inside = session.execute(sa.select(table.c.memory_id, table.c.op).where(table.c.memory_id == rolled_back)).all()
        assert [(str(memory_id), op) for memory_id, op in inside] == [(str(rolled_back), "upsert")]
        session.rollback()
    assert markers(outbox_engine) == before
    assert memory_content(outbox_engine, rolled_back) == {"i": 0}

    with Session(outbox_engine) as session:
        change_in_bulk(session, committed)
        session.commit()
    assert markers(outbox_engine) == sorted([*before, (str(committed), "upsert")])


def test_embedding_writes_bump_the_version_on_dbcore_engines_only(ours: Engine, foreign: Engine) -> None:
    [memory_id] = add_bare_memories(ours, 1)
    vector = np.linspace(-1, 1, EMBEDDING_DIMS, dtype=np.float32)
    start = current_version(ours)

    def write_and_expect(write: Callable[[Session], object], expected: int) -> None:
        with Session(ours) as session:
            write(session)
            session.flush()
            assert embedding_version(session.connection()) == expected  # same transaction
            session.commit()
        assert current_version(ours) == expected

    write_and_expect(lambda s: s.add(MemoryEmbedding(memory_id=memory_id, embedding=vector, model="m1")), start + 1)
    embedding_id = scalar(ours, sa.select(MemoryEmbedding.__table__.c.id))

    def rename(session: Session) -> None:
        embedding = session.get(MemoryEmbedding, embedding_id)
        assert embedding is not None
        embedding.model = "m2"

    write_and_expect(rename, start + 2)
    write_and_expect(lambda s: s.execute(sa.update(MemoryEmbedding).values(model="m3")), start + 3)

    with Session(ours) as session:  # a rolled-back write rolls its bump back
        session.execute(sa.update(MemoryEmbedding).values(model="lost"))
        assert embedding_version(session.connection()) == start + 4
        session.rollback()
    assert current_version(ours) == start + 3

    with Session(foreign) as session:  # no dbcore engine, no counting
        session.execute(sa.update(MemoryEmbedding).values(model="foreign"))
        session.commit()
    assert scalar(ours, sa.select(MemoryEmbedding.__table__.c.model)) == "foreign"
    assert current_version(ours) == start + 3

    write_and_expect(lambda s: s.execute(sa.delete(MemoryEmbedding)), start + 4)


def test_each_path_of_an_embedding_write_bumps_the_version_once(ours: Engine) -> None:
    """ORM flushes, ORM bulk statements and Core statements (in a session or on a bare connection)."""
    ids = add_bare_memories(ours, 3)
    vector = np.linspace(-1, 1, EMBEDDING_DIMS, dtype=np.float32)
    table = MemoryEmbedding.__table__

    def one(memory_id: uuid.UUID) -> Callable[[Session], MemoryEmbedding]:
        return lambda s: s.scalars(sa.select(MemoryEmbedding).where(MemoryEmbedding.memory_id == memory_id)).one()

    in_session: dict[str, Callable[[Session], object]] = {
        "flush insert": lambda s: s.add(MemoryEmbedding(memory_id=ids[0], embedding=vector, model="flush")),
        "flush update": lambda s: setattr(one(ids[0])(s), "model", "flush 2"),
        "flush delete": lambda s: s.delete(one(ids[0])(s)),
        "bulk insert": lambda s: s.execute(
            sa.insert(MemoryEmbedding), [{"memory_id": ids[1], "embedding": vector, "model": "bulk"}]
        ),
        "bulk update": lambda s: s.execute(sa.update(MemoryEmbedding).values(model="bulk 2")),
        "bulk delete": lambda s: s.execute(sa.delete(MemoryEmbedding)),
        "core insert": lambda s: s.connection().execute(
            table.insert().values(memory_id=ids[2], embedding=vector, model="core")
        ),
        "core update": lambda s: s.connection().execute(table.update().values(model="core 2")),
    }
    for name, write in in_session.items():
        before = current_version(ours)
        with Session(ours) as session:
            write(session)
            session.commit()
        assert current_version(ours) == before + 1, name
    before = current_version(ours)
    with ours.begin() as connection:
        connection.execute(table.delete())
    assert current_version(ours) == before + 1, "core delete on a bare connection"


def test_a_refused_embedding_write_leaves_the_version_alone(ours: Engine) -> None:
    """A write refused by the vector check, caught by the caller, bumps nothing: not at COMMIT, not in a savepoint."""
    [memory_id] = add_bare_memories(ours, 1)
    bad = {"memory_id": memory_id, "embedding": [float("inf")] * EMBEDDING_DIMS, "model": "refused"}
    table = MemoryEmbedding.__table__
    start = current_version(ours)

    with Session(ours) as session:  # Core statement on the session's connection, error caught, then COMMIT
        with pytest.raises(dbcore.ValidationError, match="embedding"):
            session.connection().execute(sa.insert(MemoryEmbedding).values(**bad))
        assert embedding_version(session.connection()) == start
        session.commit()
    assert current_version(ours) == start

    with Session(ours) as session:  # ORM statement in a savepoint that is released, not rolled back
        with session.begin_nested():
            with pytest.raises(dbcore.ValidationError, match="embedding"):
                session.execute(sa.insert(MemoryEmbedding).values(**bad))
        session.commit()
    assert current_version(ours) == start

    with ours.connect() as connection:  # a bare connection
        with pytest.raises(dbcore.ValidationError, match="embedding"):
            connection.execute(table.insert().values(**bad))
        connection.commit()
    assert current_version(ours) == start
    assert scalar(ours, sa.select(sa.func.count()).select_from(table)) == 0


# --- A: a foreign application's own models -----------------------------------------------------


class ForeignBase(DeclarativeBase):
    pass


class Gadget(ForeignBase, dbcore.SoftDeleteMixin):
    """A foreign model that reuses dbcore's SoftDeleteMixin and even says ``__system__``:
    only the bind check keeps dbcore's hooks off it."""

    __tablename__ = "hooks_gadgets"
    __system__ = True

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    label: Mapped[str] = mapped_column(sa.String(40))


def dbcore_tables_named(statements: list[str]) -> set[str]:
    names = {table.name for table in Base.metadata.sorted_tables}
    words = {word.lower() for statement in statements for word in re.findall(r"\w+", statement)}
    return names & words


def test_foreign_models_on_a_foreign_engine_work_normally(database_url: URL) -> None:
    foreign = sa.create_engine(database_url)
    statements: list[str] = []
    try:
        ForeignBase.metadata.create_all(foreign)
        event.listen(foreign, "before_cursor_execute", lambda *args: statements.append(args[2]))
        with Session(foreign) as session:
            session.add_all([Gadget(id=1, label="kept"), Gadget(id=2, label="bin")])
            session.execute(sa.insert(Gadget), [{"id": 3, "label": "bulk"}])
            session.commit()
            session.get(Gadget, 2).soft_delete()  # type: ignore[union-attr]
            session.execute(sa.update(Gadget).where(Gadget.id == 1).values(label="renamed"))
            session.commit()
            assert sorted(session.scalars(sa.select(Gadget.label))) == ["bin", "bulk", "renamed"]
            session.delete(session.get(Gadget, 3))
            session.execute(sa.delete(Gadget).where(Gadget.id == 2))
            session.commit()
            assert [(g.id, g.label) for g in session.scalars(sa.select(Gadget))] == [(1, "renamed")]
        assert statements and dbcore_tables_named(statements) == set()

        # The same model through a dbcore engine is guarded: the hooks would have acted.
        dbcore_engine = dbcore.create_engine(dbcore.Settings(database_url=database_url.render_as_string(False)))
        try:
            with Session(dbcore_engine) as session:
                session.add(Gadget(id=4, label="refused"))
                with pytest.raises(dbcore.PermissionDenied, match="hooks_gadgets"):
                    session.flush()
        finally:
            dbcore_engine.dispose()
    finally:
        ForeignBase.metadata.drop_all(foreign)
        foreign.dispose()


# --- which binds count as dbcore's --------------------------------------------------------------


def test_is_dbcore_engine(memory_engine: Engine) -> None:
    foreign = sa.create_engine("sqlite://")
    try:
        assert not hooks.is_dbcore_engine(foreign)
        with foreign.connect() as connection:
            assert not hooks.is_dbcore_engine(connection)
        assert hooks.is_dbcore_engine(memory_engine)
        with memory_engine.connect() as connection:
            assert hooks.is_dbcore_engine(connection)
            with Session(connection) as session:  # a session joined to a dbcore connection is guarded
                flush_insert(session)
                with pytest.raises(dbcore.PermissionDenied):
                    session.flush()

        hooks.attach(foreign, dbcore.Settings(database_url="sqlite://"))  # adopted: now guarded too
        assert hooks.is_dbcore_engine(foreign)
        with Session(foreign) as session:
            flush_insert(session)
            with pytest.raises(dbcore.PermissionDenied):
                session.flush()
    finally:
        foreign.dispose()


def test_an_engine_with_execution_options_stays_a_dbcore_engine(memory_engine: Engine) -> None:
    derived = memory_engine.execution_options(isolation_level="SERIALIZABLE")
    assert hooks.is_dbcore_engine(derived)
    with Session(derived) as session:
        flush_insert(session)
        with pytest.raises(dbcore.PermissionDenied):
            session.flush()
