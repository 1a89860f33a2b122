"""Deleting an agent, a world or a room with everything that belongs to it, on every dialect.

dbcore's foreign keys have no ON DELETE CASCADE (SQL Server refuses the several
cascade paths these tables would have), so the adapter deletes in foreign-key order
itself: set-based statements over id lists, memories through
:func:`dbcore.memories.delete_memories` so embeddings, the version counter and the
vector outbox stay right. Ids are read first rather than used as subqueries because
MariaDB refuses a DELETE whose subquery reads the table being deleted from.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dbcore.DB_Agents import Activity, Agent, Task
from dbcore.DB_Auth import User
from dbcore.DB_Entities import Component, Entity, Participant, Relationship, Room, World
from dbcore.DB_Memories import CacheEntry, Log, Memory
from dbcore.memories import delete_memories

__all__ = ["purge"]

_CHUNK = 500


def _ids(session: Session, statement: sa.Select[Any]) -> list[uuid.UUID]:
    return list(dict.fromkeys(session.scalars(statement)))


def _in(column: Any, ids: Sequence[uuid.UUID]) -> sa.ColumnElement[bool]:
    return column.in_(ids) if ids else sa.false()


def _run(session: Session, statement: Any, ids: Sequence[uuid.UUID], column: Any) -> None:
    for start in range(0, len(ids), _CHUNK):
        session.execute(statement.where(column.in_(ids[start : start + _CHUNK])))


def purge(
    session: Session,
    *,
    agents: Sequence[uuid.UUID] = (),
    worlds: Sequence[uuid.UUID] = (),
    rooms: Sequence[uuid.UUID] = (),
) -> None:
    """Delete ``agents``, ``worlds`` and ``rooms`` and every row that hangs off them.

    An agent takes its entities, worlds, memories, logs, cache entries, tasks and
    activities; a world its rooms; a room its participants, components, memories and
    logs. Tasks of *other* agents that point at a deleted room, world or entity keep
    their row with the link cleared.
    """
    session.flush()
    agents = list(agents)
    worlds = list(dict.fromkeys([*worlds, *_ids(session, sa.select(World.id).where(_in(World.agent_id, agents)))]))
    rooms = list(dict.fromkeys([*rooms, *_ids(session, sa.select(Room.id).where(_in(Room.world_id, worlds)))]))
    entities = _ids(session, sa.select(Entity.id).where(_in(Entity.agent_id, agents)))
    memories = _ids(
        session,
        sa.select(Memory.id).where(
            sa.or_(_in(Memory.agent_id, agents), _in(Memory.room_id, rooms), _in(Memory.entity_id, entities))
        ),
    )
    _run(session, sa.update(Memory).values(parent_id=None), memories, Memory.parent_id)
    delete_memories(session, memories)
    for column, ids in ((Log.room_id, rooms), (Log.entity_id, entities), (Log.agent_id, agents)):
        _run(session, sa.delete(Log), ids, column)
    for link, ids in ((Task.room_id, rooms), (Task.world_id, worlds), (Task.entity_id, entities)):
        _run(session, sa.update(Task).values({link.key: None}), ids, link)
    _run(session, sa.delete(Task), agents, Task.agent_id)
    _run(session, sa.delete(CacheEntry), agents, CacheEntry.agent_id)
    _run(session, sa.delete(Activity), agents, Activity.agent_id)
    for column, ids in ((Component.entity_id, entities), (Component.room_id, rooms), (Component.world_id, worlds)):
        _run(session, sa.delete(Component), ids, column)
    for column, ids in ((Participant.entity_id, entities), (Participant.room_id, rooms)):
        _run(session, sa.delete(Participant), ids, column)
    for column in (Relationship.source_id, Relationship.target_id):
        _run(session, sa.delete(Relationship), entities, column)
    _run(session, sa.update(User).values(entity_id=None), entities, User.entity_id)
    _run(session, sa.delete(Entity), entities, Entity.id)
    _run(session, sa.delete(Room), rooms, Room.id)
    _run(session, sa.delete(World), worlds, World.id)
    _run(session, sa.delete(Agent), agents, Agent.id)
    session.expire_all()
