"""dbcore.upsert: insert-or-update by a unique key on every live dialect, sync and async; MERGE compiled for SQL Server."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.orm import Session

import dbcore
from dbcore import (
    Agent,
    CacheEntry,
    Entity,
    Memory,
    MemoryEmbedding,
    Participant,
    ParticipantState,
    Room,
    RoomKind,
    VectorSpace,
)
from dbcore.upserts import Merge, upsert_statement
from tests.api_modes import Api

LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Parents:
    agent: uuid.UUID
    entities: tuple[uuid.UUID, uuid.UUID]
    rooms: tuple[uuid.UUID, uuid.UUID]


@pytest.fixture
def parents(migrated: dbcore.Settings) -> Parents:
    with dbcore.get_session(migrated) as session:
        agent = Agent(name="agent")
        session.add(agent)
        session.flush()
        entities = [Entity(agent_id=agent.id, names=[name]) for name in ("ann", "bob")]
        rooms = [Room(kind=RoomKind.GROUP, name=name) for name in ("one", "two")]
        session.add_all([*entities, *rooms])
        session.flush()
        return Parents(agent.id, (entities[0].id, entities[1].id), (rooms[0].id, rooms[1].id))


def count(settings: dbcore.Settings, model: type) -> int:
    with dbcore.get_session(settings) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def fetch(settings: dbcore.Settings, model: type, row_id: uuid.UUID) -> Any:
    with dbcore.get_session(settings) as session:
        return session.get(model, row_id)


def upserting(model: type, rows: list[dict[str, Any]], **options: Any) -> Any:
    return lambda session: dbcore.upsert(session, model, rows, **options)


# --- inserts and updates --------------------------------------------------------------


def test_new_rows_are_inserted_with_the_orm_defaults(api: Api, migrated: dbcore.Settings) -> None:
    ids = api.unit(migrated, upserting(Room, [{"kind": RoomKind.DM, "name": "dm"}, {"kind": RoomKind.API}]))
    assert len(ids) == 2 and all(isinstance(i, uuid.UUID) for i in ids) and ids[0] != ids[1]
    dm, api_room = fetch(migrated, Room, ids[0]), fetch(migrated, Room, ids[1])
    assert (dm.name, dm.kind, dm.meta, dm.source) == ("dm", RoomKind.DM, {}, "")
    assert api_room.name == "" and api_room.kind is RoomKind.API
    assert dm.created_at is not None and dm.updated_at is not None and dm.created_at.tzinfo is not None


def test_existing_rows_are_updated_by_id_and_ids_come_back_in_input_order(api: Api, migrated: dbcore.Settings) -> None:
    first = {"kind": RoomKind.DM, "name": "old", "source": "discord", "updated_at": LONG_AGO}
    old = api.unit(migrated, upserting(Room, [first]))[0]
    created = fetch(migrated, Room, old).created_at
    # Every row must be insertable (NOT NULL columns given), as INSERT ... ON CONFLICT checks it first.
    renamed = {"id": str(old).upper(), "kind": RoomKind.THREAD, "name": "renamed", "meta": {"a": 1}}
    rows = [{"kind": RoomKind.GROUP, "name": "new"}, renamed]
    ids = api.unit(migrated, upserting(Room, rows))
    assert ids[1] == old and ids[0] != old
    room = fetch(migrated, Room, old)
    assert (room.name, room.meta, room.kind) == ("renamed", {"a": 1}, RoomKind.THREAD)
    assert room.source == "discord"  # not given: its default fills only an insert
    assert room.created_at == created
    assert room.updated_at > LONG_AGO + dt.timedelta(days=365)
    assert count(migrated, Room) == 2


def test_a_natural_key_updates_the_existing_row_and_returns_its_id(
    api: Api, migrated: dbcore.Settings, parents: Parents
) -> None:
    (ann, bob), (one, _two) = parents.entities, parents.rooms
    first = api.unit(migrated, upserting(Participant, [{"entity_id": ann, "room_id": one}]))[0]
    rows = [
        {"entity_id": bob, "room_id": one, "state": ParticipantState.FOLLOWED},
        {"entity_id": ann, "room_id": one, "state": ParticipantState.MUTED, "id": uuid.uuid4()},
    ]
    ids = api.unit(migrated, upserting(Participant, rows, key=("entity_id", "room_id")))
    assert ids[1] == first and ids[0] != first
    assert fetch(migrated, Participant, first).state is ParticipantState.MUTED
    assert fetch(migrated, Participant, ids[0]).state is ParticipantState.FOLLOWED
    assert count(migrated, Participant) == 2


def test_update_lists_the_columns_an_existing_row_takes(migrated: dbcore.Settings, parents: Parents) -> None:
    rows = [{"agent_id": parents.agent, "key": "k", "value": 1, "expires_at": LONG_AGO, "updated_at": LONG_AGO}]
    with dbcore.get_session(migrated) as session:
        first = dbcore.upsert(session, CacheEntry, rows, key=("agent_id", "key"))[0]
    changed = [{"agent_id": parents.agent, "key": "k", "value": 2, "expires_at": None}]
    with dbcore.get_session(migrated) as session:
        assert dbcore.upsert(session, CacheEntry, changed, key=("agent_id", "key"), update=["value"]) == [first]
    entry = fetch(migrated, CacheEntry, first)
    assert (entry.value, entry.expires_at) == (2, LONG_AGO)
    assert entry.updated_at > LONG_AGO


def test_update_empty_inserts_new_rows_and_leaves_existing_ones(
    api: Api, migrated: dbcore.Settings, parents: Parents
) -> None:
    row = {"agent_id": parents.agent, "key": "k", "value": "first", "updated_at": LONG_AGO}
    first = api.unit(migrated, upserting(CacheEntry, [row], key=["agent_id", "key"]))[0]
    rows = [{**row, "value": "second"}, {"agent_id": parents.agent, "key": "other", "value": "new"}]
    ids = api.unit(migrated, upserting(CacheEntry, rows, key=["agent_id", "key"], update=()))
    assert ids[0] == first and ids[1] != first
    entry = fetch(migrated, CacheEntry, first)
    assert (entry.value, entry.updated_at) == ("first", LONG_AGO)
    assert fetch(migrated, CacheEntry, ids[1]).value == "new"


def test_null_keys_never_conflict(migrated: dbcore.Settings, parents: Parents) -> None:
    """Unique constraints let NULLs repeat: a NULL agent_id row is always a new row."""
    rows = [{"agent_id": None, "key": "shared", "value": n} for n in (1, 2)]
    with dbcore.get_session(migrated) as session:
        ids = dbcore.upsert(session, CacheEntry, rows, key=("agent_id", "key"))
        again = dbcore.upsert(session, CacheEntry, rows[:1], key=("agent_id", "key"))
    assert len({*ids, *again}) == 3
    assert count(migrated, CacheEntry) == 3


def test_of_two_rows_with_one_key_the_later_wins(migrated: dbcore.Settings, parents: Parents) -> None:
    rows = [{"agent_id": parents.agent, "key": "k", "value": n} for n in ("a", "b", "c")]
    with dbcore.get_session(migrated) as session:
        ids = dbcore.upsert(session, CacheEntry, rows, key=("agent_id", "key"))
    assert len(set(ids)) == 1
    assert fetch(migrated, CacheEntry, ids[0]).value == "c"
    assert count(migrated, CacheEntry) == 1


def test_rows_giving_different_columns_and_many_chunks(migrated: dbcore.Settings, parents: Parents) -> None:
    rows: list[dict[str, Any]] = [{"agent_id": parents.agent, "key": f"k{n}", "value": n} for n in range(1100)]
    rows[5] = {**rows[5], "expires_at": LONG_AGO}  # another set of columns: a statement of its own
    with dbcore.get_session(migrated) as session:
        ids = dbcore.upsert(session, CacheEntry, rows, key=("agent_id", "key"))
        again = dbcore.upsert(session, CacheEntry, [{**row, "value": -1} for row in rows], key=("agent_id", "key"))
        values = {k: v for k, v in session.execute(sa.select(CacheEntry.key, CacheEntry.value))}
    assert len(set(ids)) == 1100 and again == ids
    assert set(values.values()) == {-1} and len(values) == 1100


def test_through_psycopg2_too(migrated: dbcore.Settings, parents: Parents) -> None:
    """PostgreSQL's other driver takes the same statements (bound update stamps, key lookups); the other
    dialects run these alternating keys on their usual driver."""
    url = migrated.url
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    settings = dbcore.Settings(database_url=url.render_as_string(hide_password=False))
    rows = [{"agent_id": parents.agent, "key": key, "value": n} for n, key in enumerate("abab")]
    with dbcore.get_session(settings) as session:
        ids = dbcore.upsert(session, CacheEntry, rows, key=("agent_id", "key"))
        again = dbcore.upsert(session, CacheEntry, rows[:2], key=("agent_id", "key"))
        values = {k: v for k, v in session.execute(sa.select(CacheEntry.key, CacheEntry.value))}
    assert ids[0] == ids[2] == again[0] and ids[1] == ids[3] == again[1] and ids[0] != ids[1]
    assert values == {"a": 0, "b": 1}


def test_text_keys_compare_as_the_database_collation_does(migrated: dbcore.Settings, parents: Parents) -> None:
    """MariaDB's utf8mb4_unicode_ci finds "Café" for "cafe"; PostgreSQL and SQLite compare exactly."""
    with dbcore.get_session(migrated) as session:
        first = dbcore.upsert(
            session, CacheEntry, [{"agent_id": parents.agent, "key": "Café", "value": 1}], key=("agent_id", "key")
        )[0]
        second = dbcore.upsert(
            session, CacheEntry, [{"agent_id": parents.agent, "key": "cafe", "value": 2}], key=("agent_id", "key")
        )[0]
    if migrated.url.get_backend_name() in ("mysql", "mariadb"):
        assert second == first and count(migrated, CacheEntry) == 1
    else:
        assert second != first and count(migrated, CacheEntry) == 2
    assert fetch(migrated, CacheEntry, second).value == 2


def test_the_session_is_flushed_first_and_held_objects_are_refreshed(
    api: Api, migrated: dbcore.Settings, parents: Parents
) -> None:
    def work(session: Session) -> tuple[str, ParticipantState | None]:
        room = Room(id=dbcore.new_uuid(), kind=RoomKind.DM, name="before")  # pending: the upsert must flush it
        session.add(room)
        participant = {"entity_id": parents.entities[0], "room_id": room.id, "state": ParticipantState.MUTED}
        dbcore.upsert(session, Participant, [participant], key=("entity_id", "room_id"))
        dbcore.upsert(session, Room, [{"id": room.id, "kind": RoomKind.DM, "name": "after"}])
        held = session.scalars(sa.select(Participant).where(Participant.room_id == room.id)).one()
        return room.name, held.state

    assert api.unit(migrated, work) == ("after", ParticipantState.MUTED)


def test_system_tables_need_the_system_key(migrated: dbcore.Settings) -> None:
    row = {"name": "space", "backend": "integrated", "dims": 3}
    with pytest.raises(dbcore.PermissionDenied, match="vector_spaces"), dbcore.get_session(migrated) as session:
        dbcore.upsert(session, VectorSpace, [row], key="name")
    with dbcore.system_session(migrated) as session:
        first = dbcore.upsert(session, VectorSpace, [row], key="name")
        assert dbcore.upsert(session, VectorSpace, [{**row, "dims": 4}], key="name") == first
    assert fetch(migrated, VectorSpace, first[0]).dims == 4


def test_empty_rows_write_nothing(migrated: dbcore.Settings) -> None:
    with dbcore.get_session(migrated) as session:
        assert dbcore.upsert(session, Room, []) == []


# --- refused input: a typed error, nothing written --------------------------------------------


REFUSED = [
    pytest.param(Room, [{"kind": RoomKind.DM, "bogus": 1}], {}, dbcore.ValidationError, r"rooms\.bogus", id="unknown"),
    pytest.param(
        Room, [{"kind": RoomKind.DM, "metadata": {}}], {}, dbcore.ValidationError, "attribute is meta", id="column-name"
    ),
    pytest.param(
        CacheEntry,
        [{"key": "k"}],
        {"key": "key"},
        dbcore.ValidationError,
        r"cache_entries.*\(key\)",
        id="key-not-unique",
    ),
    pytest.param(
        CacheEntry,
        [{"key": "k", "value": 1}],
        {"key": ("agent_id", "key")},
        dbcore.ValidationError,
        r"row #0 lacks cache_entries\.agent_id",
        id="key-missing",
    ),
    pytest.param(
        Room, [{"kind": RoomKind.DM}], {"update": ["name"]}, dbcore.ValidationError, r"rooms\.name", id="update-missing"
    ),
    pytest.param(Room, [{"kind": "dm"}], {}, dbcore.ValidationError, r"rooms\.kind", id="bad-value"),
    pytest.param(
        Room, [{"kind": RoomKind.DM}, "room"], {}, dbcore.ValidationError, "row #1 must be a dict", id="not-a-dict"
    ),
    pytest.param(MemoryEmbedding, [{"model": "m"}], {}, dbcore.ValidationError, "add_memories", id="embeddings"),
    pytest.param(Memory, [{"content": {}}], {}, dbcore.ValidationError, "add_memories", id="memories"),
]


@pytest.mark.parametrize(("model", "rows", "options", "error", "message"), REFUSED)
def test_refused_input_writes_nothing(
    migrated: dbcore.Settings, model: type, rows: Any, options: dict[str, Any], error: type, message: str
) -> None:
    before = count(migrated, model)
    with pytest.raises(error, match=message), dbcore.get_session(migrated) as session:
        dbcore.upsert(session, model, rows, **options)
    assert count(migrated, model) == before


def test_a_foreign_key_violation_rolls_back_the_upsert_only(
    api: Api, migrated: dbcore.Settings, parents: Parents
) -> None:
    rows = [
        {"entity_id": parents.entities[0], "room_id": parents.rooms[0]},
        {"entity_id": parents.entities[1], "room_id": uuid.uuid4()},
    ]

    def work(session: Session) -> type[BaseException]:
        session.add(Room(kind=RoomKind.DM, name="kept"))
        with pytest.raises(dbcore.ForeignKeyViolation) as caught:
            dbcore.upsert(session, Participant, rows, key=("entity_id", "room_id"))
        return caught.type

    assert api.unit(migrated, work) is dbcore.ForeignKeyViolation
    assert count(migrated, Participant) == 0
    assert count(migrated, Room) == 3  # the caller's own write survived


def test_another_unique_key_of_another_row_is_a_duplicate_everywhere(
    migrated: dbcore.Settings, parents: Parents
) -> None:
    """PostgreSQL and SQLite raise; on MariaDB ON DUPLICATE KEY UPDATE would change the other row, so dbcore refuses."""
    row = {"agent_id": parents.agent, "key": "taken", "value": "kept"}
    with dbcore.get_session(migrated) as session:
        taken = dbcore.upsert(session, CacheEntry, [row], key=("agent_id", "key"))[0]
    for rows, key in (
        ([{**row, "id": uuid.uuid4(), "value": "lost"}], "id"),  # keyed by id, (agent_id, key) held by another row
        ([{**row, "key": "free", "id": taken, "value": "lost"}], ("agent_id", "key")),  # id held by another row
    ):
        with pytest.raises(dbcore.DuplicateKeyError), dbcore.get_session(migrated) as session:
            dbcore.upsert(session, CacheEntry, rows, key=key)
        assert count(migrated, CacheEntry) == 1
        assert fetch(migrated, CacheEntry, taken).value == "kept"
    with dbcore.get_session(migrated) as session:  # the row's own unique values are no conflict
        assert dbcore.upsert(session, CacheEntry, [{**row, "id": taken, "value": "changed"}]) == [taken]
    assert fetch(migrated, CacheEntry, taken).value == "changed"


def test_a_read_only_session_is_refused(migrated: dbcore.Settings) -> None:
    with pytest.raises(dbcore.PermissionDenied, match="read-only"), dbcore.get_session(migrated, read_only=True) as s:
        dbcore.upsert(s, Room, [{"kind": RoomKind.DM}])
    assert count(migrated, Room) == 0


# --- SQL Server: compiled only --------------------------------------------------------------


def _merge(set_columns: list[str], stamps: dict[str, Any]) -> str:
    table: sa.Table = CacheEntry.__table__  # type: ignore[assignment]
    statement = upsert_statement(
        mssql.dialect(),
        table,
        columns=["id", "agent_id", "key", "value", "created_at", "updated_at"],
        key=["agent_id", "key"],
        set_columns=set_columns,
        stamps=stamps,
    )
    assert isinstance(statement, Merge)
    return str(statement.compile(dialect=mssql.dialect()))


def test_mssql_merge_updates_matched_and_inserts_unmatched() -> None:
    sql = _merge(["value"], {"updated_at": dt.datetime.now(dt.timezone.utc)})
    assert sql.startswith("MERGE INTO cache_entries WITH (HOLDLOCK) AS target\n")
    assert (
        "USING (VALUES (:id, :agent_id, :key, :value, :created_at, :updated_at)) AS source (id, agent_id, [key], value, created_at, updated_at)"
        in sql
    )
    assert "ON target.agent_id = source.agent_id AND target.[key] = source.[key]" in sql
    assert "WHEN MATCHED THEN UPDATE SET target.value = source.value, target.updated_at = :param_1\n" in sql
    assert sql.endswith(
        "WHEN NOT MATCHED THEN INSERT (id, agent_id, [key], value, created_at, updated_at) "
        "VALUES (source.id, source.agent_id, source.[key], source.value, source.created_at, source.updated_at);"
    )


def test_mssql_merge_without_update_columns_only_inserts() -> None:
    sql = _merge([], {})
    assert "WHEN MATCHED" not in sql and "WHEN NOT MATCHED THEN INSERT" in sql


def test_merge_compiles_for_sql_server_only() -> None:
    table: sa.Table = CacheEntry.__table__  # type: ignore[assignment]
    with pytest.raises(sa.exc.CompileError, match="SQL Server only"):
        Merge(table, ["id"], ["id"], [], {}).compile(dialect=sa.dialects.sqlite.dialect())
