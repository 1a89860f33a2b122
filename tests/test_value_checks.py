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
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

import dbcore
from dbcore import migrate
from dbcore.base import make_base
from dbcore.DB_Agents import Agent
from dbcore.DB_Entities import Room, RoomKind
from dbcore.DB_Memories import EMBEDDING_DIMS, CacheEntry, Memory, MemoryEmbedding, MemoryKind
from dbcore.errors import DimensionMismatchError, ValidationError
from dbcore.memories import add_memories, delete_memories
from dbcore.testing import add_memory_parents
from dbcore.types import (
    JSON,
    PK_TYPE,
    BigInteger,
    Boolean,
    Integer,
    SmallInteger,
    String,
    Text,
    Unicode,
    UnicodeText,
    Vector,
    new_uuid,
)

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
    # A flat dict of an int, but beyond the digits Python will print: the fast check leaves it to json.dumps.
    "huge-int": lambda: {"n": 10**5000},
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
        refused(engine, functools.partial(_add_in_transaction, engine, memory, bulk=True), "memories.metadata")


def _add_in_transaction(engine: Engine, memory: dict[str, Any], bulk: bool = False) -> None:
    with Session(engine) as session, session.begin():
        add_memories(session, [memory], bulk=bulk)


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


# --- booleans, integers, text and JSON shapes: the column types of Mapped[bool/int/str/dict/list] -----------

Shapes = make_base("Shapes")


class Checked(Shapes):  # type: ignore[misc, valid-type]
    """One column of each checked type, declared the way downstream models declare them."""

    __tablename__ = "checked"
    id: Mapped[uuid.UUID] = mapped_column(PK_TYPE, primary_key=True, default=new_uuid)
    flag: Mapped[bool] = mapped_column(default=False)
    count: Mapped[int] = mapped_column(default=0)
    small: Mapped[int] = mapped_column(SmallInteger, default=0)
    big: Mapped[int] = mapped_column(BigInteger, default=0)
    code: Mapped[str] = mapped_column(Unicode(5), default="")
    note: Mapped[str] = mapped_column(UnicodeText, default="")
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    extra: Mapped[dict[str, Any] | None]
    anything: Mapped[Any] = mapped_column(JSON, nullable=True)


CHECKED = Checked.__table__


@pytest.fixture
def checked(engine: Engine) -> Iterator[Engine]:
    Shapes.metadata.create_all(engine)
    yield engine
    Shapes.metadata.drop_all(engine)


def checked_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(CHECKED)).scalar_one())


def refused_everywhere(engine: Engine, column: str, value: Any, error: type[Exception] = ValidationError) -> None:
    """``value`` in ``checked.<column>`` is refused when set, by an ORM flush and by a Core executemany."""
    label = f"checked.{column}"
    with pytest.raises(error, match=label.replace(".", r"\.")):
        Checked(**{column: value})

    def core() -> None:
        with engine.begin() as connection:
            connection.execute(CHECKED.insert(), [{"id": new_uuid(), column: value}, {"id": new_uuid(), column: value}])

    def flush() -> None:
        with Session(engine) as session, session.begin():
            row = Checked()
            session.add(row)
            session.flush()
            # Past the set check, as a value changed after set_committed_value or by a listener would be.
            sa.orm.attributes.set_committed_value(row, column, value)
            sa.orm.attributes.flag_modified(row, column)

    for write in (core, flush):
        before = checked_count(engine)
        with pytest.raises(error) as caught:
            write()
        assert type(caught.value) is error and label in str(caught.value), str(caught.value)[:300]
        for leak in ("INSERT", "UPDATE", "[parameters", "[SQL"):
            assert leak not in str(caught.value)
        assert checked_count(engine) == before


WRONG_VALUES = [
    ("flag", "no"),
    ("flag", "true"),
    ("flag", 2),
    ("flag", -1),
    ("flag", 0.5),
    ("flag", 1.0),
    ("count", True),
    ("count", 1.5),
    ("count", 2.0),
    ("count", "7"),
    ("count", decimal.Decimal(3)),
    ("count", 2**31),
    ("count", -(2**31) - 1),
    ("small", 2**15),
    ("big", 2**63),
    ("big", -(2**63) - 1),
    ("big", 2**70),
    ("code", 12345),
    ("code", b"raw"),
    ("code", ["a"]),
    ("code", "a\ud800"),
    ("code", "\udfff"),
    ("code", "sixchr"),
    ("note", "x\udc80y"),
    ("attrs", ["a", "b"]),
    ("attrs", "model=gpt"),
    ("attrs", 1),
    ("tags", {"a": 1}),
    ("tags", "a,b"),
    ("extra", [1]),
]


@pytest.mark.parametrize(("column", "value"), [pytest.param(c, v, id=f"{c}-{v!r}"[:40]) for c, v in WRONG_VALUES])
def test_wrong_type_or_out_of_range_is_refused(checked: Engine, column: str, value: Any) -> None:
    refused_everywhere(checked, column, value)


def test_values_of_the_right_type_round_trip(checked: Engine) -> None:
    """The edges of each range, 0/1 as booleans, numpy scalars, and five astral characters in Unicode(5)."""
    rows = [
        Checked(flag=True, count=2**31 - 1, small=-(2**15), big=2**63 - 1, code="\U0001f600" * 5, attrs={"a": [1]}),
        Checked(
            flag=np.bool_(False), count=np.int64(-(2**31)), small=np.int16(7), big=-(2**63), code="ünï", tags=["x"]
        ),
        Checked(flag=1, count=MemoryKind.DOCUMENT, code="", note="ok", extra={"k": None}, anything=[1, "a"]),
        Checked(flag=0, extra=None, anything=None),
    ]
    with Session(checked) as session, session.begin():
        session.add_all(rows)
    with Session(checked) as session:
        got = session.execute(
            sa.select(Checked.flag, Checked.count, Checked.small, Checked.big, Checked.code, Checked.tags)
        ).all()
    assert sorted(map(tuple, got), key=repr) == sorted(
        [
            (True, 2**31 - 1, -(2**15), 2**63 - 1, "\U0001f600" * 5, []),
            (False, -(2**31), 7, -(2**63), "ünï", ["x"]),
            (True, 2, 0, 0, "", []),
            (False, 0, 0, 0, "", []),
        ],
        key=repr,
    )
    for value in got:
        assert type(value.flag) is bool and type(value.count) is int


def test_none_in_a_dict_or_list_column_is_sql_null(checked: Engine) -> None:
    """Shaped JSON stores None as SQL NULL: NOT NULL columns refuse it, nullable ones find it with IS NULL."""
    for column in ("attrs", "tags"):
        with pytest.raises(dbcore.errors.NotNullViolation):
            with Session(checked) as session, session.begin():
                session.add(Checked(**{column: None}))
    assert checked_count(checked) == 0
    with Session(checked) as session, session.begin():
        session.add_all([Checked(extra=None, anything=None), Checked(extra={"a": 1}, anything=None)])
    with checked.connect() as connection:
        sql_null_extra = connection.execute(
            sa.select(sa.func.count()).select_from(CHECKED).where(sa.column("extra").is_(None))
        ).scalar_one()
        sql_null_anything = connection.execute(
            sa.select(sa.func.count()).select_from(CHECKED).where(sa.column("anything").is_(None))
        ).scalar_one()
    # Any-JSON columns keep sa.JSON's rule: None is the JSON value null, not SQL NULL.
    assert (sql_null_extra, sql_null_anything) == (1, 0)


@pytest.mark.compile_only
def test_json_elements_compare_with_any_value() -> None:
    """``column["key"]`` is shapeless: comparing an element of a dict column with a number is not refused."""
    element = Memory.meta["score"]
    assert element.type.shape is None  # type: ignore[attr-defined]
    assert (element == 5).right.type.shape is None  # type: ignore[attr-defined]


@pytest.mark.compile_only
def test_text_length_counts_as_sql_server_does_on_mssql() -> None:
    """NVARCHAR(n) counts UTF-16 units: an astral character takes two there, one elsewhere."""
    code = CHECKED.c.code.type
    astral = "a\U0001f600\U0001f600"  # 3 characters, 5 UTF-16 units
    assert code.process_bind_param(astral, postgresql.dialect()) == astral
    assert code.process_bind_param("ab\U0001f600", mssql.dialect()) == "ab\U0001f600"
    with pytest.raises(ValidationError, match=r"checked\.code holds at most 5 characters, got 6 characters"):
        Checked(code="123456")
    with pytest.raises(ValidationError, match=r"at most 4 .* got 5 UTF-16 units"):
        Unicode(4).process_bind_param(astral, mssql.dialect())


@pytest.mark.compile_only
def test_text_types_keep_their_length_in_the_cache_key() -> None:
    assert Unicode(5)._static_cache_key != Unicode(6)._static_cache_key
    assert JSON(shape=dict)._static_cache_key != JSON(shape=list)._static_cache_key != JSON()._static_cache_key


# --- add_memories and delete_memories pass values to the column checks ---------------------


@pytest.mark.parametrize(
    ("field", "value", "column"),
    [
        ("is_unique", "no", "memories.is_unique"),
        ("is_unique", 2, "memories.is_unique"),
        ("content", "hello", "memories.content"),
        ("content", "", "memories.content"),
        ("content", [], "memories.content"),
        ("metadata", [1, 2], "memories.metadata"),
    ],
)
def test_add_memories_refuses_wrong_types_by_column(
    ready: tuple[Engine, dict[str, Any]], field: str, value: Any, column: str
) -> None:
    engine, parents = ready
    memory = {
        "agent_id": parents["agent_id"],
        "entity_id": parents["entity_id"],
        "room_id": parents["room_ids"][0],
        "kind": "message",
        field: value,
    }
    refused(engine, functools.partial(_add_in_transaction, engine, memory), column)


@pytest.mark.parametrize("ids", [None, "one-id", b"raw", uuid.UUID(int=1), 7, {"id": 1}])
def test_delete_memories_wants_a_list_of_ids(ready: tuple[Engine, dict[str, Any]], ids: Any) -> None:
    engine, parents = ready
    _one_memory(engine, parents)

    def write() -> None:
        with Session(engine) as session, session.begin():
            delete_memories(session, ids)

    refused(engine, write, "ids must be a list of UUIDs")


# --- migrations render the checked types as plain SQLAlchemy ------------------------------------


CHECKED_TYPES: dict[str, Callable[[], Any]] = {
    "unicode-200": lambda: Unicode(200),
    "unicode-text": UnicodeText,
    "string-30": lambda: String(30),
    "text": Text,
    "json": JSON,
    "json-dict": lambda: JSON(shape=dict),
    "json-list": lambda: JSON(shape=list),
    "boolean": Boolean,
    "small-integer": SmallInteger,
    "integer": Integer,
    "big-integer": BigInteger,
}


@pytest.mark.compile_only
@pytest.mark.parametrize("make", list(CHECKED_TYPES.values()), ids=list(CHECKED_TYPES))
def test_render_item_writes_plain_sqlalchemy_with_the_same_ddl(make: Callable[[], Any]) -> None:
    type_ = make()
    context = SimpleNamespace(imports=set())
    rendered = migrate.render_item("type", type_, context)
    assert isinstance(rendered, str) and rendered.startswith("sa."), rendered
    plain = eval(rendered, {"sa": sa})  # noqa: S307 - the string render_item wrote, as a revision would run it
    assert not isinstance(plain, sa.types.TypeDecorator)
    for dialect in (sqlite.dialect(), postgresql.dialect(), mysql.dialect(), mssql.dialect()):
        assert plain.compile(dialect=dialect) == type_.compile(dialect=dialect)
    assert context.imports == set()


def test_boolean_columns_compare_with_true_and_false_constants(ready: tuple[Engine, dict[str, Any]]) -> None:
    """``is_(True)`` / ``== False`` on a checked Boolean render the constant, as sa.Boolean does (PostgreSQL refuses IS $1)."""
    engine, parents = ready
    memory = {"agent_id": parents["agent_id"], "entity_id": parents["entity_id"], "room_id": parents["room_ids"][0]}
    with Session(engine) as session:
        add_memories(session, [{**memory, "kind": "message", "is_unique": True}, {**memory, "kind": "message"}])
        session.commit()
        count = sa.select(sa.func.count()).select_from(Memory)
        assert session.scalar(count.where(Memory.is_unique.is_(True))) == 1
        assert session.scalar(count.where(Memory.is_unique == False)) == 1  # noqa: E712 - the comparison under test
        assert session.scalar(count.where(Memory.is_unique.is_not(True))) == 1
