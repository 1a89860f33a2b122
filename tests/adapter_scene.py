"""Fresh rows for adapter tests on a shared database: an agent with two entities, a world and a room."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

import dbcore
from dbcore.DB_Memories import EMBEDDING_DIMS
from tests.api_modes import AdapterView


@dataclass
class Scene:
    agent: uuid.UUID
    user: uuid.UUID
    friend: uuid.UUID
    world: uuid.UUID
    room: uuid.UUID


def scene(adapter: AdapterView, name: str = "agent") -> Scene:
    """An agent, its two entities (user, friend), a world of it and a room of that world with both in it."""
    agent = adapter.create_agent(f"{name}-{uuid.uuid4().hex[:6]}")
    user, friend = adapter.create_entities(
        [{"agent_id": agent.id, "names": ["user"]}, {"agent_id": agent.id, "names": ["friend"]}]
    )
    world = adapter.create_world("world", agent_id=agent.id)
    room = adapter.create_room(kind="group", name="room", world_id=world.id, participants=[user, friend])
    return Scene(agent.id, user, friend, world.id, room.id)


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=EMBEDDING_DIMS).astype(np.float32)


def count(adapter: AdapterView, model: type, **where: object) -> int:
    """Rows of ``model`` matching ``where``, counted with plain SQL."""
    table = model.__table__  # type: ignore[attr-defined]
    statement = sa.select(sa.func.count()).select_from(table)
    for column, value in where.items():
        statement = statement.where(table.c[column] == value)
    with dbcore.get_engine(adapter.settings).connect() as connection:
        return int(connection.scalar(statement) or 0)
