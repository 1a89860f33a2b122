"""Values no dialect should store are refused the same way on every live dialect.

Each refusal is a typed dbcore error naming ``table.column``, never a SQLAlchemy
StatementError with the SQL and its parameters, and nothing is written: text with a
NUL byte, values JSON cannot encode, NaN or infinity inside JSON, another enum's
member as a memory kind, a vector of the wrong length. ORM attributes of dbcore's
column types are checked when they are set, so the error points at the wrong line.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

import dbcore
from dbcore.base import make_base
from dbcore.DB_Agents import Agent
from dbcore.DB_Entities import Room, RoomKind
from dbcore.DB_Memories import EMBEDDING_DIMS, CacheEntry, Memory, MemoryEmbedding, MemoryKind
from dbcore.errors import DimensionMismatchError, ValidationError
from dbcore.memories import add_memories
from dbcore.testing import add_memory_parents
from dbcore.types import PK_TYPE, Vector, new_uuid

TABLES = ("agents", "memories", "memory_embeddings", "cache_entries")


@pytest.fixture
def ready(migrated: dbcore.Settings) -> Iterator[tuple[Engine, dict[str, Any]]]:
    engine = dbcore.get_engine(migrated)
    with Session(engine) as session:
        parents = add_memory_parents(session, name="checks")
        session.commit()
    yield engine, parents


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            name: connection.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
            for name in TABLES
        }


def refused(engine: Engine, write: Callable[[], object], column: str, error: type[Exception] = ValidationError) -> None:
    """``write`` raises ``error`` naming ``column``, without SQL or parameters, and leaves every table as it was."""
    before = row_counts(engine)
    with pytest.raises(Exception) as caught:
        write()
    assert type(caught.value) is error, f"{column}: {type(caught.value).__name__}: {str(caught.value)[:300]}"
    message = str(caught.value)
    assert column in message
    for leak in ("INSERT", "UPDATE", "[parameters", "[SQL"):
        assert leak not in message, message
    assert row_counts(engine) == before


def orm_add(engine: Engine, make: Callable[[], object]) -> Callable[[], None]:
    def write() -> None:
        with Session(engine) as session, session.begin():
            session.add(make())

    return write


def core_insert(engine: Engine, model: type[Any], /, **values: Any) -> Callable[[], None]:
    """An INSERT through ``session.execute(insert(...))`` with two rows (an executemany)."""

    def write() -> None:
        with Session(engine) as session, session.begin():
            session.execute(sa.insert(model), [values, {**values}])

    return write


def core_values(engine: Engine, model: type[Any], /, **values: Any) -> Callable[[], None]:
    """One INSERT ... VALUES on the session's connection."""

    def write() -> None:
        with Session(engine) as session, session.begin():
            session.connection().execute(sa.insert(model).values(**values))

    return write


# --- memory kinds --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", [RoomKind.DM, RoomKind.SELF, True, False], ids=["room-dm", "room-self", "true", "false"]
)
def test_add_memories_refuses_other_enums_and_bools_as_kind(ready: tuple[Engine, dict[str, Any]], kind: Any) -> None:
    engine, parents = ready
    memory = {**{key: parents[key] for key in ("agent_id", "entity_id")}, "room_id": parents["room_ids"][0]}

    def write() -> None:
        with Session(engine) as session, session.begin():
            add_memories(session, [{**memory, "kind": kind}])

    refused(engine, write, "kind")


def test_add_memories_still_takes_members_values_and_names(ready: tuple[Engine, dict[str, Any]]) -> None:
    engine, parents = ready
    memory = {**{key: parents[key] for key in ("agent_id", "entity_id")}, "room_id": parents["room_ids"][0]}
    with Session(engine) as session, session.begin():
        ids = add_memories(session, [{**memory, "kind": kind} for kind in (MemoryKind.CUSTOM, 2, "fragment")])
    with Session(engine) as session:
        kinds = {session.get(Memory, i).kind for i in ids}  # type: ignore[union-attr]
    assert kinds == {MemoryKind.CUSTOM, MemoryKind.DOCUMENT, MemoryKind.FRAGMENT}


# --- NUL in text -------------------------------------------------------------------------


def test_nul_in_text_is_refused_on_every_path(ready: tuple[Engine, dict[str, Any]]) -> None:
    engine, parents = ready
    refused(engine, orm_add(engine, lambda: Agent(name="a\x00b")), "agents.name")
    refused(engine, orm_add(engine, lambda: Agent(name="ok", bio="\x00")), "agents.bio")
    refused(engine, core_insert(engine, Agent, name="a\x00b", bio="", settings={}), "agents.name")
    refused(engine, core_values(engine, Agent, name="ok", bio="x\x00", settings={}), "agents.bio")
    refused(engine, core_insert(engine, CacheEntry, id=new_uuid(), key="k\x00", value=1), "cache_entries.key")

    def update() -> None:
        with Session(engine) as session, session.begin():
            agent = session.get(Agent, parents["agent_id"])
            assert agent is not None
            agent.name = "renamed\x00"

    refused(engine, update, "agents.name")
    with Session(engine) as session:
        assert session.get(Agent, parents["agent_id"]).name == "checks"  # type: ignore[union-attr]


def test_text_without_nul_round_trips(ready: tuple[Engine, dict[str, Any]]) -> None:
    engine, _ = ready
    name = "ünïcødé \u2603 tab\there"
    with Session(engine) as session, session.begin():
        agent = Agent(name=name, bio="line\nbreak")
        session.add(agent)
        session.flush()
        agent_id = agent.id
    with Session(engine) as session:
        stored = session.get(Agent, agent_id)
        assert stored is not None and stored.name == name and stored.bio == "line\nbreak"


# --- JSON --------------------------------------------------------------------------------


def circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


UNENCODABLE: dict[str, Callable[[], Any]] = {
    "object": object,
    "set": lambda: {"tags": {1, 2}},
    "bytes": lambda: [b"raw"],
    "decimal": lambda: {"price": decimal.Decimal("1.5")},
    "circular": circular,
    "datetime": lambda: {"at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)},
}
NOT_FINITE: dict[str, Callable[[], Any]] = {
    "nan": lambda: {"score": float("nan")},
    "inf": lambda: [1.0, float("inf")],
    "nested-minus-inf": lambda: {"a": {"b": [float("-inf")]}},
    "bare-nan": lambda: float("nan"),
}


@pytest.mark.parametrize("family", ["unencodable", "not-finite"])
def test_json_that_cannot_be_stored_is_refused(ready: tuple[Engine, dict[str, Any]], family: str) -> None:
    engine, parents = ready
    cases = UNENCODABLE if family == "unencodable" else NOT_FINITE
    for name, make in cases.items():
        label = f"{family}/{name}"
        entry = functools.partial(CacheEntry, key=label, value=make())
        agent = functools.partial(Agent, name=label, settings={"x": make()})
        refused(engine, orm_add(engine, entry), "cache_entries.value")
        refused(engine, core_insert(engine, CacheEntry, id=new_uuid(), key=label, value=make()), "cache_entries.value")
        refused(engine, orm_add(engine, agent), "agents.settings")
        memory = {
            "agent_id": parents["agent_id"],
            "entity_id": parents["entity_id"],
            "room_id": parents["room_ids"][0],
            "kind": "message",
            "metadata": {"value": make()},
        }

        refused(engine, functools.partial(_add_in_transaction, engine, memory), "memories.metadata")


def _add_in_transaction(engine: Engine, memory: dict[str, Any]) -> None:
    with Session(engine) as session, session.begin():
        add_memories(session, [memory])


def test_json_that_can_be_stored_round_trips(ready: tuple[Engine, dict[str, Any]]) -> None:
    engine, _ = ready
    value = {"n": 1, "f": 1.5, "big": 1e300, "s": "ü", "l": [None, True, {"k": []}], "t": (1, 2)}
    with Session(engine) as session, session.begin():
        session.add_all([CacheEntry(key="fine", value=value), CacheEntry(key="none", value=None)])
    with Session(engine) as session:
        stored = dict(tuple(row) for row in session.execute(sa.select(CacheEntry.key, CacheEntry.value)))
        # None is stored as JSON null (cache_entries.value is NOT NULL), as sa.JSON stored it.
        sql_nulls = (
            sa.select(sa.func.count()).select_from(sa.table("cache_entries")).where(sa.column("value").is_(None))
        )
        assert session.execute(sql_nulls).scalar_one() == 0
    assert stored == {"fine": {**value, "t": [1, 2]}, "none": None}


# --- vectors and the other dbcore types, checked where they are set ---------------------


def test_wrong_length_vector_is_refused_where_it_is_set(ready: tuple[Engine, dict[str, Any]]) -> None:
    engine, parents = ready
    short = [1.0, 2.0]
    # No session and no flush: the constructor line itself is refused.
    with pytest.raises(DimensionMismatchError, match=r"memory_embeddings\.embedding"):
        MemoryEmbedding(memory_id=uuid.uuid4(), embedding=short, model="m")
    embedding = MemoryEmbedding(memory_id=uuid.uuid4(), model="m")
    with pytest.raises(DimensionMismatchError, match=r"memory_embeddings\.embedding"):
        embedding.embedding = np.zeros(EMBEDDING_DIMS + 1)

    memory_id = _one_memory(engine, parents)
    good = np.ones(EMBEDDING_DIMS, dtype=np.float32)

    def grown_after_set() -> None:
        # Checked when set, then changed in place: the flush's own check still refuses it.
        vector = list(good)
        with Session(engine) as session, session.begin():
            session.add(MemoryEmbedding(memory_id=memory_id, embedding=vector, model="m"))
            vector.append(1.0)

    refused(engine, grown_after_set, "memory_embeddings.embedding", DimensionMismatchError)
    values = {"id": new_uuid(), "memory_id": memory_id, "embedding": short, "model": "m"}
    refused(
        engine, core_insert(engine, MemoryEmbedding, **values), "memory_embeddings.embedding", DimensionMismatchError
    )
    refused(
        engine, core_values(engine, MemoryEmbedding, **values), "memory_embeddings.embedding", DimensionMismatchError
    )

    def core_on_connection() -> None:
        with engine.begin() as connection:
            connection.execute(MemoryEmbedding.__table__.insert(), [values])

    refused(engine, core_on_connection, "memory_embeddings.embedding", DimensionMismatchError)


def _one_memory(engine: Engine, parents: dict[str, Any]) -> uuid.UUID:
    memory = {key: parents[key] for key in ("agent_id", "entity_id")}
    with Session(engine) as session, session.begin():
        (memory_id,) = add_memories(session, [{**memory, "room_id": parents["room_ids"][0], "kind": "message"}])
    return memory_id


SET_REFUSALS: list[tuple[str, Callable[[], object], str]] = [
    ("guid", lambda: Agent(name="x", owner_id="not-a-uuid"), "agents.owner_id"),
    ("enum-other-enum", lambda: Room(kind=MemoryKind.DOCUMENT), "rooms.kind"),
    ("enum-bool", lambda: Room(kind=True), "rooms.kind"),
    ("naive-datetime", lambda: Agent(name="x", created_at=dt.datetime(2024, 1, 1)), "agents.created_at"),
    ("json", lambda: Agent(name="x", settings={"s": {1}}), "agents.settings"),
    ("json-nan", lambda: CacheEntry(key="k", value=float("nan")), "cache_entries.value"),
    ("text-nul", lambda: Room(kind=RoomKind.DM, name="\x00"), "rooms.name"),
]


@pytest.mark.parametrize(("make", "column"), [pytest.param(m, c, id=n) for n, m, c in SET_REFUSALS])
def test_bad_values_are_refused_where_they_are_set(make: Callable[[], object], column: str) -> None:
    with pytest.raises(ValidationError, match=column.replace(".", r"\.")):
        make()


def test_values_set_are_kept_as_given() -> None:
    vector = [0.5] * EMBEDDING_DIMS
    embedding = MemoryEmbedding(memory_id=uuid.uuid4(), embedding=vector, model="m")
    assert embedding.embedding is vector
    key = str(uuid.uuid4()).upper()
    agent = Agent(name="x", owner_id=key, settings={"a": 1}, created_at=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    assert agent.owner_id == key and agent.settings == {"a": 1}
    agent.name = sa.func.lower("X")  # type: ignore[assignment]
    agent.settings = None  # type: ignore[assignment]
    assert isinstance(agent.name, sa.sql.ClauseElement)


def test_sql_expression_set_on_an_attribute_reaches_the_database(ready: tuple[Engine, dict[str, Any]]) -> None:
    engine, parents = ready
    with Session(engine) as session, session.begin():
        agent = session.get(Agent, parents["agent_id"])
        assert agent is not None
        agent.name = sa.func.upper(Agent.name)  # type: ignore[assignment]
    with Session(engine) as session:
        assert session.get(Agent, parents["agent_id"]).name == "CHECKS"  # type: ignore[union-attr]


def test_make_base_models_are_checked_when_set() -> None:
    Mine = make_base("Mine")

    class Doc(Mine):  # type: ignore[misc, valid-type]
        __tablename__ = "docs"
        id: Mapped[uuid.UUID] = mapped_column(PK_TYPE, primary_key=True, default=new_uuid)
        vec: Mapped[Any] = mapped_column(Vector(3), nullable=True)
        title: Mapped[str | None]
        extra: Mapped[dict[str, Any]] = mapped_column(default=dict)

    with pytest.raises(DimensionMismatchError, match=r"docs\.vec"):
        Doc(vec=[1.0])
    with pytest.raises(ValidationError, match=r"docs\.extra"):
        Doc(extra={"n": float("inf")})
    with pytest.raises(ValidationError, match=r"docs\.title"):
        Doc(title="\x00")
    assert Doc(vec=[1, 2, 3]).vec == [1, 2, 3]
