"""Bad inputs that reach a database: model attributes, bulk writers, seeding, vector stores, system keys.

Each case is run on every live dialect by tests/bad_inputs/test_contract.py.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

import dbcore
from dbcore import errors
from dbcore.DB_Agents import ActivityType, Agent, Task
from dbcore.DB_Auth import ApiKey, MFAMethod, User
from dbcore.DB_Entities import Component, Entity, Room, RoomKind
from dbcore.DB_Memories import EMBEDDING_DIMS, EmbeddingVersion, Memory, MemoryEmbedding, MemoryKind, VectorSpace
from dbcore.memories import add_memories, delete_memories
from dbcore.security import create_system_key
from dbcore.vectorstores import F, get_vector_store
from dbcore.vectorstores.integrated import IntegratedVectorStore

from .harness import INJECTION, Case, Ctx, column_named

DIMS = EMBEDDING_DIMS
GOOD = [0.5] * DIMS
ERROR_TYPE = uuid.UUID("FFFFFFFF-FFFF-FFFF-0000-FFFFFFFFFFFF")
JSON_PROBLEM = (errors.ValidationError, errors.DataError)
Act = Callable[[Ctx], object]


# --- how a case reaches the database ---------------------------------------------------


def add(make: Callable[[Ctx], Any]) -> Act:
    """Add the object ``make(ctx)`` builds in a dbcore session and flush it."""

    def act(ctx: Ctx) -> None:
        with dbcore.get_session(ctx.settings) as session:
            session.add(make(ctx))
            session.flush()

    return act


def add_plain(make: Callable[[Ctx], Any]) -> Act:
    """The same through a hand-made ``Session`` on the dbcore engine."""

    def act(ctx: Ctx) -> None:
        with Session(dbcore.get_engine(ctx.settings)) as session:
            session.add(make(ctx))
            session.flush()

    return act


def change_agent(**values: Any) -> Act:
    """Set attributes of the existing agent and flush (an UPDATE)."""

    def act(ctx: Ctx) -> None:
        with dbcore.get_session(ctx.settings) as session:
            agent = session.get(Agent, ctx.agent_id)
            for key, value in values.items():
                setattr(agent, key, value)
            session.flush()

    return act


def core(statement: Callable[[Ctx], Any], rows: Callable[[Ctx], Any] | None = None) -> Act:
    """Execute a Core/ORM statement through ``session.execute``."""

    def act(ctx: Ctx) -> None:
        with dbcore.get_session(ctx.settings) as session:
            session.execute(statement(ctx), rows(ctx) if rows else None)

    return act


def add_foreign(make: Callable[[Ctx], Any]) -> Act:
    """The same through a ``Session`` on a plain SQLAlchemy engine (no dbcore hooks) for the same database."""

    def act(ctx: Ctx) -> None:
        engine = sa.create_engine(ctx.settings.url, poolclass=sa.pool.NullPool)
        try:
            with Session(engine) as session:
                session.add(make(ctx))
                session.flush()
        finally:
            engine.dispose()

    return act


def refused_then_commit() -> Act:
    """A Core insert of a wrong-length embedding is refused; the caller goes on and commits the transaction."""

    def act(ctx: Ctx) -> None:
        row = {
            "id": uuid.uuid4(),
            "memory_id": ctx.memory_id,
            "embedding": [0.1] * 3,
            "model": "",
            "created_at": dbcore.utcnow(),
        }
        with dbcore.get_session(ctx.settings) as session:
            try:
                session.connection().execute(MemoryEmbedding.__table__.insert(), [row])
            except errors.DimensionMismatchError:
                session.commit()
                raise

    return act


def via_connection(statement: Callable[[Ctx], Any], rows: Callable[[Ctx], Any]) -> Act:
    """Execute a Core statement through ``session.connection().execute`` (no ORM hooks)."""

    def act(ctx: Ctx) -> None:
        with dbcore.get_session(ctx.settings) as session:
            session.connection().execute(statement(ctx), rows(ctx))

    return act


def memories(items: Callable[[Ctx], Any], embeddings: Any = None, **kw: Any) -> Act:
    def act(ctx: Ctx) -> None:
        with dbcore.get_session(ctx.settings) as session:
            add_memories(session, items(ctx), embeddings, **kw)

    return act


def delete(ids: Callable[[Ctx], Any]) -> Act:
    def act(ctx: Ctx) -> None:
        with dbcore.get_session(ctx.settings) as session:
            delete_memories(session, ids(ctx))

    return act


def store_call(call: Callable[[Any, Ctx], Any], **store_kw: Any) -> Act:
    """Call the integrated vector store of the database."""

    def act(ctx: Ctx) -> None:
        with get_vector_store(ctx.settings, **store_kw) as store:
            call(store, ctx)

    return act


def query(**kw: Any) -> Act:
    vector = kw.pop("vector", GOOD)
    return store_call(lambda store, ctx: store.query(vector, **kw))


def query_filter(spec: Callable[[Ctx], Any]) -> Act:
    return store_call(lambda store, ctx: store.query(GOOD, k=3, filter=spec(ctx)))


def as_key(key: Callable[[Ctx], Any], write: Callable[[Session, Ctx], None]) -> Act:
    """Write a system table in a session opened with ``key(ctx)``."""

    def act(ctx: Ctx) -> None:
        with dbcore.get_session(ctx.settings, api_key=key(ctx)) as session:
            write(session, ctx)
            session.flush()

    return act


@contextmanager
def seed_list(rows: Any) -> Iterator[None]:
    saved = ActivityType.__dict__["seed_list"]
    ActivityType.seed_list = rows
    try:
        yield
    finally:
        ActivityType.seed_list = saved


def seeding(rows: Any) -> Act:
    """Run dbcore.seed with ActivityType.seed_list replaced by ``rows``."""

    def act(ctx: Ctx) -> None:
        with seed_list(rows), dbcore.system_session(ctx.settings) as session:
            dbcore.seed(session, models=[ActivityType])

    return act


# --- the rows the cases build -----------------------------------------------------------


def agent(**fields: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: Agent(**{"name": "case", **fields})


def entity(**fields: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: Entity(**{"agent_id": ctx.agent_id, **fields})


def room(**fields: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: Room(**{"kind": RoomKind.DM, **fields})


def task(**fields: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: Task(**{"agent_id": ctx.agent_id, "name": "t", **fields})


def user(**fields: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: User(**{"email": f"{uuid.uuid4().hex}@example.com", **fields})


def memory(**fields: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: Memory(**{**ctx.parents, "kind": MemoryKind.MESSAGE, "content": {"t": 1}, **fields})


def embedding(vector: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: MemoryEmbedding(memory_id=ctx.memory_id, embedding=vector)


def version(value: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: EmbeddingVersion(name=f"case-{uuid.uuid4().hex[:8]}", version=value)


def circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def insert_activity_type(session: Session, ctx: Ctx) -> None:
    session.add(ActivityType(name="Sleeping", description="The agent rests."))


def update_activity_types(session: Session, ctx: Ctx) -> None:
    session.execute(sa.update(ActivityType).values(description="changed"))


def delete_activity_type(session: Session, ctx: Ctx) -> None:
    session.delete(session.get(ActivityType, ERROR_TYPE))


def insert_vector_space(session: Session, ctx: Ctx) -> None:
    session.add(VectorSpace(name="other", backend="integrated", dims=3))


def insert_api_key(session: Session, ctx: Ctx) -> None:
    session.add(ApiKey(name="sneaky", prefix="dbk_sneaky", key_hash="0" * 64, is_system=True))


def core_insert_activity_type(session: Session, ctx: Ctx) -> None:
    table = ActivityType.__table__
    session.connection().execute(
        table.insert(),
        [
            {
                "id": uuid.uuid4(),
                "name": "Core",
                "description": "",
                "created_at": dbcore.utcnow(),
                "updated_at": dbcore.utcnow(),
            }
        ],
    )


AGENTS_NAME = column_named("agents", "name")
EMBEDDING = r"memory_embeddings\.embedding"


def _cases() -> list[Case]:  # noqa: PLR0915 - one table, read top to bottom
    V, D, FK, NN, DUP, P = (
        errors.ValidationError,
        errors.DataError,
        errors.ForeignKeyViolation,
        errors.NotNullViolation,
        errors.DuplicateKeyError,
        errors.PermissionDenied,
    )
    naive = dt.datetime(2024, 1, 1, 12, 0)
    return [
        # GUID / PK_TYPE
        Case("guid-int", add(agent(id=123)), V, r"agents\.id"),
        Case("guid-short-text", add(agent(id="abc")), V, r"agents\.id"),
        Case("guid-no-hyphens", add(agent(id="0" * 32)), V, r"agents\.id"),
        Case("guid-bytes", add(agent(id=b"\x01" * 16)), V, r"agents\.id"),
        Case("guid-braces", add(agent(id="{" + str(uuid.uuid4()) + "}")), V, r"agents\.id"),
        Case("guid-padded", add(agent(id=f" {uuid.uuid4()} ")), V, r"agents\.id"),
        Case("guid-float", add(agent(id=1.5)), V, r"agents\.id"),
        Case("guid-injection", add(agent(id=INJECTION)), V, r"agents\.id"),
        Case("guid-fk-text", add(entity(agent_id="not-a-uuid")), V, r"entities\.agent_id"),
        Case("guid-in-where", core(lambda ctx: sa.select(Agent).where(Agent.id == INJECTION)), V, r"agents\.id"),
        Case(
            "guid-in-list", core(lambda ctx: sa.select(Agent).where(Agent.id.in_([ctx.agent_id, 7]))), V, r"agents\.id"
        ),
        # SqlEnum
        Case("enum-name-text", add(room(kind="dm")), V, r"rooms\.kind"),
        Case("enum-out-of-range", add(room(kind=99)), V, r"rooms\.kind"),
        Case("enum-zero", add(room(kind=0)), V, r"rooms\.kind"),
        Case("enum-negative", add(room(kind=-1)), V, r"rooms\.kind"),
        Case("enum-bool", add(room(kind=True)), V, r"rooms\.kind"),
        Case("enum-float", add(room(kind=2.0)), V, r"rooms\.kind"),
        Case("enum-other-enum", add(room(kind=MemoryKind.DOCUMENT)), V, r"rooms\.kind"),
        Case("enum-injection", add(room(kind=INJECTION)), V, r"rooms\.kind"),
        Case("enum-none", add(room(kind=None)), NN, column_named("rooms", "kind")),
        Case("enum-task-status-name", add(task(status="DONE")), V, r"tasks\.status"),
        Case(
            "enum-mfa-type",
            add(lambda ctx: MFAMethod(user_id=uuid.uuid4(), method_type=4)),
            V,
            r"mfa_methods\.method_type",
        ),
        Case(
            "enum-memory-kind-in-where",
            core(lambda ctx: sa.select(Memory).where(Memory.kind == "message")),
            V,
            r"memories\.kind",
        ),
        Case(
            "enum-core-update",
            core(lambda ctx: sa.update(Room).where(Room.id == ctx.room_id).values(kind=42)),
            V,
            r"rooms\.kind",
        ),
        # Vector
        Case("vector-short", add(embedding([0.1] * 3)), errors.DimensionMismatchError, EMBEDDING),
        Case("vector-long", add(embedding([0.1] * (DIMS + 1))), errors.DimensionMismatchError, EMBEDDING),
        Case("vector-empty", add(embedding([])), V, EMBEDDING),
        Case("vector-nan", add(embedding([float("nan")] * DIMS)), V, EMBEDDING),
        Case("vector-inf", add(embedding([0.1] * (DIMS - 1) + [float("inf")])), V, EMBEDDING),
        Case("vector-beyond-float32", add(embedding([1e39] * DIMS)), V, EMBEDDING),
        Case("vector-text", add(embedding("0.1,0.2")), V, EMBEDDING),
        Case("vector-strings", add(embedding(["0.5"] * DIMS)), V, EMBEDDING),
        Case("vector-bools", add(embedding([True] * DIMS)), V, EMBEDDING),
        Case("vector-nones", add(embedding([None] * DIMS)), V, EMBEDDING),
        Case("vector-complex", add(embedding([1j] * DIMS)), V, EMBEDDING),
        Case("vector-dict", add(embedding({"a": 1})), V, EMBEDDING),
        Case("vector-ragged", add(embedding([[0.1] * DIMS, [0.1]])), V, EMBEDDING),
        Case("vector-short-plain-session", add_plain(embedding([0.1] * 3)), errors.DimensionMismatchError, EMBEDDING),
        Case(
            "vector-short-foreign-engine", add_foreign(embedding([0.1] * 3)), errors.DimensionMismatchError, EMBEDDING
        ),
        Case(
            "vector-short-core-insert",
            via_connection(
                lambda ctx: MemoryEmbedding.__table__.insert(),
                lambda ctx: [
                    {
                        "id": uuid.uuid4(),
                        "memory_id": ctx.memory_id,
                        "embedding": [0.1] * 3,
                        "model": "",
                        "created_at": dbcore.utcnow(),
                    }
                ],
            ),
            errors.DimensionMismatchError,
            EMBEDDING,
        ),
        Case("vector-short-core-insert-then-commit", refused_then_commit(), errors.DimensionMismatchError, EMBEDDING),
        # UTCDateTime
        Case("datetime-naive", add(user(last_login_at=naive)), V, r"users\.last_login_at"),
        Case("datetime-date", add(user(last_login_at=dt.date(2024, 1, 1))), V, r"users\.last_login_at"),
        Case("datetime-iso-text", add(user(last_login_at="2024-01-01T00:00:00Z")), V, r"users\.last_login_at"),
        Case("datetime-epoch-int", add(user(last_login_at=1_700_000_000)), V, r"users\.last_login_at"),
        Case("datetime-naive-update", change_agent(deleted_at=naive), V, r"agents\.deleted_at"),
        Case("datetime-naive-due", add(task(due_at=naive)), V, r"tasks\.due_at"),
        Case(
            "datetime-naive-in-where",
            core(lambda ctx: sa.select(Memory).where(Memory.created_at > naive)),
            V,
            r"memories\.created_at",
        ),
        Case(
            "datetime-none-created-at",
            core(lambda ctx: sa.insert(Agent).values(name="d", created_at=None)),
            NN,
            column_named("agents", "created_at"),
        ),
        # JSON
        Case("json-object", add(agent(settings={"x": object()})), JSON_PROBLEM, r"agents\.settings"),
        Case("json-set", add(agent(settings={"x": {1, 2}})), JSON_PROBLEM, r"agents\.settings"),
        Case("json-bytes", add(agent(settings={"x": b"raw"})), JSON_PROBLEM, r"agents\.settings"),
        Case("json-decimal", add(agent(settings={"x": decimal.Decimal("1.1")})), JSON_PROBLEM, r"agents\.settings"),
        Case("json-circular", add(agent(settings=circular())), JSON_PROBLEM, r"agents\.settings"),
        Case(
            "json-datetime",
            add(agent(settings={"at": dt.datetime.now(dt.timezone.utc)})),
            JSON_PROBLEM,
            r"agents\.settings",
        ),
        Case(
            "json-uuid",
            add(lambda ctx: Component(entity_id=ctx.entity_id, type="t", data={"id": uuid.uuid4()})),
            JSON_PROBLEM,
            r"components\.data",
        ),
        Case("json-tuple-key", add(agent(settings={("a", "b"): 1})), JSON_PROBLEM, r"agents\.settings"),
        Case("json-nan", add(agent(settings={"x": float("nan")})), JSON_PROBLEM, r"agents\.settings"),
        Case("json-infinity", add(agent(settings={"x": float("inf")})), JSON_PROBLEM, r"agents\.settings"),
        Case("json-list-for-dict", add(agent(settings=["a", "b"])), V, r"agents\.settings"),
        Case("json-text-for-dict", add(agent(settings="model=gpt")), V, r"agents\.settings"),
        Case("json-dict-for-list", add(task(tags={"a": 1})), V, r"tasks\.tags"),
        Case("json-none-content", add(memory(content=None)), (V, NN), column_named("memories", "content")),
        # strings with length limits, and text that no column can hold
        Case("string-too-long", add(agent(name="n" * 201)), (V, D), AGENTS_NAME),
        Case("string-too-long-update", change_agent(name="n" * 201), (V, D), AGENTS_NAME),
        Case("string-too-long-email", add(user(email="e" * 321)), (V, D), column_named("users", "email")),
        Case(
            "string-too-long-component-type",
            add(lambda ctx: Component(entity_id=ctx.entity_id, type="t" * 101)),
            (V, D),
            column_named("components", "type"),
        ),
        Case("string-nul-byte", add(agent(name="a\x00b")), (V, D), AGENTS_NAME),
        Case("string-lone-surrogate", add(agent(name="a\ud800b")), (V, D), AGENTS_NAME),
        Case("string-int", add(agent(name=123)), V, AGENTS_NAME),
        Case("string-bytes", add(agent(name=b"raw")), V, AGENTS_NAME),
        Case("string-list", add(agent(name=["a"])), V, AGENTS_NAME),
        # booleans
        Case("bool-text", add(agent(enabled="yes")), V, r"agents\.enabled"),
        Case("bool-two", add(agent(enabled=2)), V, r"agents\.enabled"),
        Case("bool-float", add(agent(enabled=0.5)), V, r"agents\.enabled"),
        Case(
            "bool-none",
            core(lambda ctx: sa.insert(Agent).values(name="b", enabled=None)),
            NN,
            column_named("agents", "enabled"),
        ),
        # integers
        Case("int-text", add(version("abc")), V, r"embedding_versions\.version"),
        Case("int-overflow", add(version(2**70)), (V, D), r"embedding_versions\.version"),
        Case("int-float", add(version(1.5)), V, r"embedding_versions\.version"),
        Case("int-bool", add(version(True)), V, r"embedding_versions\.version"),
        # foreign keys to missing rows
        Case("fk-missing-agent", add(entity(agent_id=uuid.uuid4())), FK, column_named("entities", "agent_id")),
        Case("fk-missing-room", add(memory(room_id=uuid.uuid4())), FK, column_named("memories", "room_id")),
        Case("fk-missing-parent", add(memory(parent_id=uuid.uuid4())), FK, column_named("memories", "parent_id")),
        Case("fk-missing-owner-update", change_agent(owner_id=uuid.uuid4()), FK, column_named("agents", "owner_id")),
        Case(
            "fk-delete-referenced-agent",
            core(lambda ctx: sa.delete(Agent).where(Agent.id == ctx.agent_id)),
            FK,
            r"agent_id",
        ),
        # NOT NULL
        Case("notnull-agent-name", add(agent(name=None)), NN, AGENTS_NAME),
        Case("notnull-task-name", add(task(name=None)), NN, column_named("tasks", "name")),
        Case("notnull-entity-agent", add(entity(agent_id=None)), NN, column_named("entities", "agent_id")),
        Case("notnull-update", change_agent(name=None), NN, AGENTS_NAME),
        Case("notnull-core-insert", core(lambda ctx: sa.insert(Agent), lambda ctx: [{"name": None}]), NN, AGENTS_NAME),
        # unique duplicates
        Case("unique-email", add(lambda ctx: User(email=ctx.user_email)), DUP, column_named("users", "email")),
        Case("unique-primary-key", add(lambda ctx: Agent(id=ctx.agent_id, name="twin")), DUP, r"agents"),
        Case("unique-embedding-per-memory", add(embedding(GOOD)), DUP, column_named("memory_embeddings", "memory_id")),
        # add_memories
        Case("add-not-a-dict", memories(lambda ctx: [1]), V, r"memory #0"),
        Case("add-dict-not-list", memories(lambda ctx: ctx.memory()), V, r"memory #0"),
        Case("add-missing-kind", memories(lambda ctx: [{**ctx.parents, "content": {}}]), V, r"lacks kind"),
        Case("add-unknown-key", memories(lambda ctx: [ctx.memory(text="hi")]), V, r"unknown keys text"),
        Case("add-kind-other-enum", memories(lambda ctx: [ctx.memory(kind=RoomKind.DM)]), V, r"kind"),
        Case("add-kind-upper-name", memories(lambda ctx: [ctx.memory(kind="MESSAGE")]), V, r"kind"),
        Case("add-kind-out-of-range", memories(lambda ctx: [ctx.memory(kind=99)]), V, r"kind"),
        Case("add-kind-bool", memories(lambda ctx: [ctx.memory(kind=True)]), V, r"kind"),
        Case("add-kind-injection", memories(lambda ctx: [ctx.memory(kind=INJECTION)]), V, r"kind"),
        Case("add-agent-text", memories(lambda ctx: [ctx.memory(agent_id=INJECTION)]), V, r"memories\.agent_id"),
        Case(
            "add-missing-agent-row",
            memories(lambda ctx: [ctx.memory(agent_id=uuid.uuid4())]),
            FK,
            column_named("memories", "agent_id"),
        ),
        Case(
            "add-missing-world-row",
            memories(lambda ctx: [ctx.memory(world_id=uuid.uuid4())]),
            FK,
            column_named("memories", "world_id"),
        ),
        Case("add-duplicate-id", memories(lambda ctx: [ctx.memory(id=ctx.memory_id)]), DUP, r"memories"),
        Case(
            "add-duplicate-in-batch",
            memories(lambda ctx: [ctx.memory(id=ERROR_TYPE), ctx.memory(id=ERROR_TYPE)]),
            (V, DUP),
            r"memories",
        ),
        Case(
            "add-naive-created-at",
            memories(lambda ctx: [ctx.memory(created_at=dt.datetime(2024, 1, 1))]),
            V,
            r"memories\.created_at",
        ),
        Case("add-content-text", memories(lambda ctx: [ctx.memory(content="hello")]), V, r"content"),
        Case(
            "add-content-unencodable",
            memories(lambda ctx: [ctx.memory(content={"x": object()})]),
            JSON_PROBLEM,
            r"content",
        ),
        Case("add-metadata-list", memories(lambda ctx: [ctx.memory(metadata=[1, 2])]), V, r"metadata"),
        Case("add-is-unique-text", memories(lambda ctx: [ctx.memory(is_unique="no")]), V, r"is_unique"),
        Case(
            "add-embeddings-wrong-dims",
            memories(lambda ctx: [ctx.memory()], np.ones((1, 3))),
            errors.DimensionMismatchError,
            EMBEDDING,
        ),
        Case("add-embeddings-nan", memories(lambda ctx: [ctx.memory()], np.full((1, DIMS), np.nan)), V, EMBEDDING),
        Case("add-embeddings-zero", memories(lambda ctx: [ctx.memory()], np.zeros((1, DIMS))), V, EMBEDDING),
        Case("add-embeddings-extra-row", memories(lambda ctx: [ctx.memory()], np.ones((2, DIMS))), V, EMBEDDING),
        Case("add-embeddings-strings", memories(lambda ctx: [ctx.memory()], [["a"] * DIMS]), V, EMBEDDING),
        # Issue 12 #2: the bulk writer refuses what the Vector column refuses.
        Case("add-embeddings-numeric-strings", memories(lambda ctx: [ctx.memory()], [["0.5"] * DIMS]), V, EMBEDDING),
        Case("add-embeddings-bools", memories(lambda ctx: [ctx.memory()], [[True] * DIMS]), V, EMBEDDING),
        Case("add-embeddings-complex", memories(lambda ctx: [ctx.memory()], [[0.5 + 1j] * DIMS]), V, EMBEDDING),
        Case(
            "add-embedding-key-numeric-strings",
            memories(lambda ctx: [ctx.memory(embedding=["0.5"] * DIMS)]),
            V,
            EMBEDDING,
        ),
        Case(
            "add-embedding-key-and-argument",
            memories(lambda ctx: [ctx.memory(embedding=GOOD)], np.ones((1, DIMS))),
            V,
            r"embedding",
        ),
        Case(
            "add-embedding-on-some", memories(lambda ctx: [ctx.memory(embedding=GOOD), ctx.memory()]), V, r"embedding"
        ),
        Case(
            "add-model-too-long",
            memories(lambda ctx: [ctx.memory()], np.ones((1, DIMS)), model="m" * 201),
            (V, D),
            column_named("memory_embeddings", "model"),
        ),
        # delete_memories
        Case("delete-injection-id", delete(lambda ctx: [INJECTION]), V, r"memor(y|ies)"),
        Case("delete-int-id", delete(lambda ctx: [123]), V, r"memor(y|ies)"),
        Case("delete-one-text-not-list", delete(lambda ctx: str(ctx.memory_id)), V, r"ids"),
        Case("delete-none", delete(lambda ctx: None), (V, TypeError), r"ids"),
        # seeding
        Case(
            "seed-unknown-column",
            seeding([{"id": "FFFFFFFF-FFFF-FFFF-00AA-FFFFFFFFFFFF", "name": "X", "colour": "red"}]),
            V,
            r"colour",
        ),
        Case(
            "seed-bad-id", seeding([{"id": "12345678-FFFF-FFFF-0000-FFFFFFFFFFFF", "name": "X"}]), V, r"seed_list\[0\]"
        ),
        Case("seed-missing-id", seeding([{"name": "X"}]), V, r"has no 'id'"),
        Case("seed-row-not-dict", seeding(["Error"]), V, r"seed_list\[0\]"),
        Case("seed-list-not-list", seeding({"id": "x"}), V, r"seed_list"),
        Case(
            "seed-repeated-id",
            seeding([{"id": "FFFFFFFF-FFFF-FFFF-00AA-FFFFFFFFFFFF", "name": "X"}] * 2),
            V,
            r"repeats an id",
        ),
        Case(
            "seed-duplicate-name",
            seeding([{"id": "FFFFFFFF-FFFF-FFFF-00AA-FFFFFFFFFFFF", "name": "Error"}]),
            DUP,
            column_named("activity_types", "name"),
        ),
        Case(
            "seed-name-none",
            seeding([{"id": "FFFFFFFF-FFFF-FFFF-00AA-FFFFFFFFFFFF", "name": None}]),
            NN,
            column_named("activity_types", "name"),
        ),
        Case(
            "seed-name-too-long",
            seeding([{"id": "FFFFFFFF-FFFF-FFFF-00AA-FFFFFFFFFFFF", "name": "n" * 101}]),
            (V, D),
            column_named("activity_types", "name"),
        ),
        # the integrated vector store
        Case("store-k-zero", query(k=0), V, r"k=0"),
        Case("store-k-negative", query(k=-1), V, r"k=-1"),
        Case("store-k-bool", query(k=True), V, r"k=True"),
        Case("store-k-text", query(k="10"), V, r"k='10'"),
        Case("store-k-float", query(k=2.5), V, r"k=2\.5"),
        Case("store-k-huge", query(k=10**12), V, r"k=1000000000000"),
        Case("store-k-beyond-bigint", query(k=2**64), V, r"k=18446744073709551616"),
        Case("store-min-score-nan", query(min_score=float("nan")), V, r"min_score=nan"),
        Case("store-min-score-text", query(min_score="0.5"), V, r"min_score='0\.5'"),
        Case("store-min-score-inf", query(min_score=float("inf")), V, r"min_score=inf"),
        Case("store-min-score-above-one", query(min_score=1.5), V, r"min_score=1\.5"),
        Case("store-min-score-below-minus-one", query(min_score=-2), V, r"min_score=-2"),
        Case("store-min-score-bool", query(min_score=True), V, r"min_score=True"),
        Case("store-query-wrong-dims", query(vector=[0.1] * 3), errors.DimensionMismatchError, r"query vector"),
        Case("store-query-nan", query(vector=[float("nan")] * DIMS), V, r"query vector"),
        Case("store-query-strings", query(vector=["a"] * DIMS), V, r"query vector"),
        Case("store-query-text", query(vector="embedding"), V, r"query vector"),
        Case("store-query-zero", query(vector=[0.0] * DIMS), V, r"query vector"),
        Case("store-query-none", query(vector=None), V, r"query vector"),
        Case("store-filter-unknown-field", query_filter(lambda ctx: {"colour": "red"}), V, r"colour"),
        Case("store-filter-unknown-operator", query_filter(lambda ctx: {"room_id": {"$regex": "x"}}), V, r"\$regex"),
        Case("store-filter-top-level-operator", query_filter(lambda ctx: {"$not": {"kind": "message"}}), V, r"\$not"),
        Case("store-filter-injection-value", query_filter(lambda ctx: {"room_id": INJECTION}), V, r"room_id"),
        Case("store-filter-injection-field", query_filter(lambda ctx: {INJECTION: 1}), V, r"unknown field"),
        Case("store-filter-injection-kind", query_filter(lambda ctx: F("kind") == INJECTION), V, r"kind"),
        Case(
            "store-filter-injection-operator",
            query_filter(lambda ctx: {"kind": {INJECTION: 1}}),
            V,
            r"unknown operator",
        ),
        Case("store-filter-empty-in", query_filter(lambda ctx: {"kind": {"$in": []}}), V, r"\$in"),
        Case("store-filter-in-not-list", query_filter(lambda ctx: {"kind": {"$in": "message"}}), V, r"\$in"),
        Case("store-filter-none-value", query_filter(lambda ctx: {"room_id": None}), V, r"room_id"),
        Case("store-filter-nan-value", query_filter(lambda ctx: F("created_at") > float("nan")), V, r"created_at"),
        Case("store-filter-text", query_filter(lambda ctx: "room_id = 1"), V, r"filter"),
        Case("store-filter-empty-dict", query_filter(lambda ctx: {}), V, r"empty filter"),
        Case("store-filter-and-not-list", query_filter(lambda ctx: {"$and": {"kind": "message"}}), V, r"\$and"),
        Case("store-filter-text-comparison", query_filter(lambda ctx: F("kind") > "message"), V, r"kind"),
        Case(
            "store-upsert-injection-id",
            store_call(lambda s, ctx: s.upsert([(INJECTION, GOOD)])),
            V,
            r"DROP TABLE|memory",
        ),
        Case(
            "store-upsert-missing-memory", store_call(lambda s, ctx: s.upsert([(uuid.uuid4(), GOOD)])), V, r"no memory"
        ),
        Case(
            "store-upsert-wrong-dims",
            store_call(lambda s, ctx: s.upsert([(ctx.memory_id, [1.0])])),
            errors.DimensionMismatchError,
            r"record",
        ),
        Case(
            "store-upsert-single-record",
            store_call(lambda s, ctx: s.upsert({"id": ctx.memory_id, "vector": GOOD})),
            V,
            r"list of records",
        ),
        Case("store-upsert-empty-id", store_call(lambda s, ctx: s.upsert([("", GOOD)])), V, r"record id"),
        Case("store-delete-injection-id", store_call(lambda s, ctx: s.delete(ids=[INJECTION])), V, r"id"),
        Case("store-delete-nothing", store_call(lambda s, ctx: s.delete()), V, r"ids or a filter"),
        Case("store-delete-single-id", store_call(lambda s, ctx: s.delete(ids=str(ctx.memory_id))), V, r"list of ids"),
        Case(
            "store-delete-injection-filter",
            store_call(lambda s, ctx: s.delete(filter={"agent_id": INJECTION})),
            V,
            r"agent_id",
        ),
        Case("store-get-int-ids", store_call(lambda s, ctx: s.get([1, 2])), V, r"record id"),
        Case(
            "store-metadata-key-injection",
            store_call(lambda s, ctx: None, metadata_keys=[INJECTION]),
            V,
            r"metadata key",
        ),
        Case(
            "store-wrong-dims",
            lambda ctx: IntegratedVectorStore(dbcore.get_engine(ctx.settings), DIMS + 1),
            errors.DimensionMismatchError,
            r"memory_embeddings\.embedding",
        ),
        Case("store-search-unknown", store_call(lambda s, ctx: None, search="faiss"), V, r"search="),
        Case("store-ef-search-zero", store_call(lambda s, ctx: None, ef_search=0), V, r"ef_search"),
        Case(
            "store-unknown-backend",
            lambda ctx: get_vector_store(ctx.settings, backend=INJECTION),
            errors.ConfigurationError,
            r"no vector store named",
        ),
        # the system key
        Case("key-none", as_key(lambda ctx: None, insert_activity_type), P, r"activity_types.*no API key"),
        Case(
            "key-wrong", as_key(lambda ctx: "dbk_" + "A" * 43, insert_activity_type), P, r"activity_types.*not a valid"
        ),
        Case(
            "key-same-prefix",
            as_key(lambda ctx: ctx.system_key[:-4] + "AAAA", insert_activity_type),
            P,
            r"activity_types",
        ),
        Case("key-short", as_key(lambda ctx: "abc", insert_activity_type), P, r"activity_types"),
        Case("key-injection", as_key(lambda ctx: INJECTION, insert_activity_type), P, r"activity_types"),
        Case("key-not-text", as_key(lambda ctx: 12345, insert_activity_type), P, r"activity_types"),
        Case("key-revoked", as_key(lambda ctx: ctx.revoked_key, insert_activity_type), P, r"activity_types"),
        Case("key-expired", as_key(lambda ctx: ctx.expired_key, insert_activity_type), P, r"activity_types"),
        Case("key-not-system", as_key(lambda ctx: ctx.plain_key, insert_activity_type), P, r"activity_types"),
        Case("key-wrong-bulk-update", as_key(lambda ctx: ctx.revoked_key, update_activity_types), P, r"activity_types"),
        Case("key-wrong-delete", as_key(lambda ctx: ctx.expired_key, delete_activity_type), P, r"activity_types"),
        Case("key-wrong-vector-space", as_key(lambda ctx: ctx.plain_key, insert_vector_space), P, r"vector_spaces"),
        Case("key-wrong-api-key-row", as_key(lambda ctx: ctx.revoked_key, insert_api_key), P, r"api_keys"),
        Case(
            "key-none-core-connection-insert", as_key(lambda ctx: None, core_insert_activity_type), P, r"activity_types"
        ),
        Case(
            "key-create-short-system-key",
            lambda ctx: _create_key(ctx, "short-key"),
            P,
            r"at least 24 characters",
        ),
    ]


def _create_key(ctx: Ctx, key: str) -> None:
    with dbcore.system_session(ctx.settings) as session:
        create_system_key(session, key=key)


DATABASE_CASES = _cases()
