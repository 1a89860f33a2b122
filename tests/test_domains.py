"""dbcore's four domains on a migrated, seeded database: write a connected graph, read it back everywhere."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

import dbcore
from dbcore import (
    Activity,
    ActivityType,
    Agent,
    CacheEntry,
    Component,
    Entity,
    Memory,
    MemoryEmbedding,
    MemoryKind,
    MFAMethod,
    MFAMethodType,
    Participant,
    ParticipantState,
    Relationship,
    Room,
    RoomKind,
    Task,
    TaskStatus,
    User,
    World,
)
from dbcore.DB_Memories import EMBEDDING_DIMS

THINKING = uuid.UUID("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")
TEXT = "Hello 👋🏽 世界 — ça va? 日本語テキスト 🧠"
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)

DOMAINS = {
    "dbcore.DB_Auth": ["User", "ApiKey", "MFAMethod", "MFAMethodType", "Permission", "PermissionGrant"],
    "dbcore.DB_Agents": ["Agent", "ActivityType", "Activity", "Task", "TaskStatus"],
    "dbcore.DB_Entities": [
        "World",
        "Room",
        "RoomKind",
        "Entity",
        "Participant",
        "ParticipantState",
        "Relationship",
        "Component",
    ],
    "dbcore.DB_Memories": ["Memory", "MemoryKind", "MemoryEmbedding", "VectorSpace", "CacheEntry"],
}


def count(settings: dbcore.Settings, model: type) -> int:
    with dbcore.get_session(settings) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def test_a_connected_graph_round_trips(migrated: dbcore.Settings) -> None:
    rng = np.random.default_rng(7)
    vector = rng.standard_normal(EMBEDDING_DIMS).astype(np.float32)
    vector[:3] = [np.float32(1e-38), np.float32(-3.4e38), np.float32(0.1)]  # tiny, huge, inexact

    with dbcore.get_session(migrated) as session:
        user = User(email="ada@example.com", display_name="Ada Lövelace")
        user.mfa_methods.append(MFAMethod(method_type=MFAMethodType.TOTP, label="authenticator"))  # type: ignore[attr-defined]
        agent = Agent(name="Eliza", bio="A helpful agent.", settings={"model": "tiny"}, owner=user)
        entity = Entity(agent=agent, names=["Ada", "エイダ"], meta={"lang": "en"})
        other = Entity(agent=agent, names=["Bob"])
        user.entity = entity  # type: ignore[attr-defined]
        world = World(name="Workspace", agent=agent)
        room = Room(name="#general", kind=RoomKind.CHANNEL, source="api", world=world)
        session.add_all(
            [
                Participant(entity=entity, room=room, state=ParticipantState.FOLLOWED),
                Relationship(source=entity, target=other, tags=["friend"]),
                Component(entity=entity, room=room, type="profile", data={"bio": TEXT}),
            ]
        )
        messages = [
            Memory(
                kind=MemoryKind.MESSAGE,
                content={"text": f"{TEXT} #{n}"},
                agent=agent,
                entity=entity,
                room=room,
                world=world,
                created_at=T0 + dt.timedelta(seconds=10 * n),
            )
            for n in (2, 0, 1)
        ]
        session.add_all(messages)
        session.add(MemoryEmbedding(memory=messages[1], embedding=vector, model="test-embedder"))
        document = Memory(kind=MemoryKind.DOCUMENT, content={"text": "doc"}, agent=agent, entity=entity, room=room)
        document.children.extend(
            Memory(kind=MemoryKind.FRAGMENT, content={"text": f"part {n}"}, agent=agent, entity=entity, room=room)
            for n in range(2)
        )
        session.add(document)
        session.add(Activity(agent=agent, activity_type_id=THINKING, message="pondering", data={"step": 1}))
        session.add(Task(agent=agent, name="summarize", tags=["daily"], status=TaskStatus.RUNNING))
        session.add(CacheEntry(agent=agent, key="last-summary", value={"text": TEXT, "n": [1, 2, 3]}))
        session.flush()
        ids = {"user": user.id, "agent": agent.id, "entity": entity.id, "room": room.id, "document": document.id}

    with dbcore.get_session(migrated) as session:
        user = session.get_one(User, ids["user"])
        agent = session.get_one(Agent, ids["agent"])
        entity = session.get_one(Entity, ids["entity"])
        room = session.get_one(Room, ids["room"])

        # auth
        assert [(m.method_type, m.label) for m in user.mfa_methods] == [(MFAMethodType.TOTP, "authenticator")]  # type: ignore[attr-defined]
        assert user.display_name == "Ada Lövelace"
        assert agent.owner is user  # type: ignore[attr-defined]
        assert user.agents_as_owner == [agent]  # type: ignore[attr-defined]
        # entities: the late-bound reverse both ways
        assert user.entity is entity  # type: ignore[attr-defined]
        assert entity.users == [user]  # type: ignore[attr-defined]
        assert entity.names == ["Ada", "エイダ"]
        assert entity.agent is agent  # type: ignore[attr-defined]
        assert entity in agent.entities and len(agent.entities) == 2  # type: ignore[attr-defined]
        assert room.kind is RoomKind.CHANNEL
        assert room.world.name == "Workspace" and room.world.rooms == [room]  # type: ignore[attr-defined]
        [participant] = entity.participants  # type: ignore[attr-defined]
        assert participant.state is ParticipantState.FOLLOWED and participant.room is room
        assert room.participants == [participant]  # type: ignore[attr-defined]
        [link] = entity.relationships_as_source  # type: ignore[attr-defined]
        assert link.target.names == ["Bob"] and link.tags == ["friend"]
        assert link.target.relationships_as_target == [link]
        [component] = entity.components  # type: ignore[attr-defined]
        assert component.data == {"bio": TEXT} and component.room is room

        # memories, ordered by room and time
        ordered = (
            session.execute(
                sa.select(Memory)
                .where(Memory.room_id == room.id, Memory.kind == MemoryKind.MESSAGE)
                .order_by(Memory.created_at)
            )
            .scalars()
            .all()
        )
        assert [m.content["text"] for m in ordered] == [f"{TEXT} #{n}" for n in (0, 1, 2)]
        assert [m.created_at for m in ordered] == [T0 + dt.timedelta(seconds=10 * n) for n in (0, 1, 2)]
        assert all(m.room is room and m.agent is agent for m in ordered)  # type: ignore[attr-defined]
        assert len(room.memories) == 6 and len(agent.memories) == 6  # type: ignore[attr-defined]
        [embedding] = ordered[0].memory_embeddings  # type: ignore[attr-defined]
        assert embedding.model == "test-embedder"
        assert embedding.embedding.dtype == np.float32 and embedding.embedding.shape == (EMBEDDING_DIMS,)
        assert embedding.embedding.tobytes() == vector.tobytes()  # bit-exact
        document = session.get_one(Memory, ids["document"])
        assert sorted(child.content["text"] for child in document.children) == ["part 0", "part 1"]
        assert all(child.parent is document and child.kind is MemoryKind.FRAGMENT for child in document.children)

        # agents
        [activity] = agent.activities  # type: ignore[attr-defined]
        assert activity.activity_type.name == "Thinking" and activity.data == {"step": 1}  # type: ignore[attr-defined]
        assert activity in session.get_one(ActivityType, THINKING).activities  # type: ignore[attr-defined]
        [task] = agent.tasks  # type: ignore[attr-defined]
        assert task.status is TaskStatus.RUNNING and task.tags == ["daily"]
        [cached] = agent.cache_entries  # type: ignore[attr-defined]
        assert cached.value == {"text": TEXT, "n": [1, 2, 3]} and cached.key == "last-summary"


def test_user_agent_entity_cycle_in_one_flush(migrated: dbcore.Settings) -> None:
    # users -> entities -> agents -> users: Entity.users has post_update=True, so one flush can write all three.
    with dbcore.get_session(migrated) as session:
        user = User(email="cycle@example.com")
        entity = Entity(agent=Agent(name="A", owner=user))
        user.entity = entity  # type: ignore[attr-defined]
        session.add(user)
    with dbcore.get_session(migrated) as session:
        user = session.execute(sa.select(User)).scalar_one()
        assert user.entity.users == [user]  # type: ignore[attr-defined]


def test_duplicate_email_is_refused(migrated: dbcore.Settings) -> None:
    with dbcore.get_session(migrated) as session:
        session.add(User(email="dup@example.com"))
    with pytest.raises(dbcore.DuplicateKeyError):
        with dbcore.get_session(migrated) as session:
            session.add(User(email="dup@example.com"))
    assert count(migrated, User) == 1


def test_memory_in_a_missing_room_is_refused(migrated: dbcore.Settings) -> None:
    with dbcore.get_session(migrated) as session:
        agent = Agent(name="A")
        entity = Entity(agent=agent)
        session.add(entity)
        session.flush()
        agent_id, entity_id = agent.id, entity.id
    with pytest.raises((dbcore.ForeignKeyViolation, dbcore.IntegrityViolation)):
        with dbcore.get_session(migrated) as session:
            session.add(
                Memory(
                    kind=MemoryKind.MESSAGE,
                    content={"text": "x"},
                    agent_id=agent_id,
                    entity_id=entity_id,
                    room_id=uuid.uuid4(),
                )
            )
    assert count(migrated, Memory) == 0


def test_embedding_of_the_wrong_dimension_is_refused(migrated: dbcore.Settings) -> None:
    with dbcore.get_session(migrated) as session:
        agent = Agent(name="A")
        memory = Memory(
            kind=MemoryKind.MESSAGE, content={}, agent=agent, entity=Entity(agent=agent), room=Room(kind=RoomKind.DM)
        )
        session.add(memory)
        session.flush()
        memory_id = memory.id
    with pytest.raises(dbcore.DimensionMismatchError, match=r"memory_embeddings\.embedding"):
        with dbcore.get_session(migrated) as session:
            session.add(MemoryEmbedding(memory_id=memory_id, embedding=np.zeros(EMBEDDING_DIMS + 1, dtype=np.float32)))
    assert count(migrated, MemoryEmbedding) == 0
    assert count(migrated, Memory) == 1


def test_models_follow_the_rules() -> None:
    assert dbcore.check_models(dbcore.Base.metadata) == []


@pytest.mark.parametrize("module_name", DOMAINS)
def test_every_class_is_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in DOMAINS[module_name]:
        assert getattr(dbcore, name) is getattr(module, name)
        assert name in dbcore.__all__ and name in module.__all__
    assert dbcore.PermissionDenied is importlib.import_module("dbcore.errors").PermissionDenied
