"""Agents: create, get, list, update (settings merged), delete (with what belongs to them), upsert."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from dbcore.adapter.cascade import purge
from dbcore.adapter.context import Context, as_uuid, json_object, merged, non_empty
from dbcore.adapter.operation import bind, reads
from dbcore.DB_Agents import Agent
from dbcore.upserts import upsert

__all__ = ["AgentMethods"]


def _visible(cx: Context) -> sa.Select[Agent]:
    return cx.confine(sa.select(Agent), Agent.id)


def create_agent(
    cx: Context,
    name: str,
    *,
    bio: str = "",
    settings: dict[str, Any] | None = None,
    enabled: bool = True,
    id: uuid.UUID | None = None,  # noqa: A002
) -> Agent:
    """Create an agent. A :meth:`for_agent` view may create only the agent it is confined to."""
    non_empty(name, "name", 200)
    agent_id = as_uuid(id) if id is not None else uuid.uuid4()
    if cx.scope is not None:
        cx.owner(agent_id, "id")
    agent = Agent(id=agent_id, name=name, bio=bio, settings=json_object(settings or {}, "settings"), enabled=enabled)
    cx.session.add(agent)
    cx.session.flush()
    return agent


@reads
def get_agent(cx: Context, agent_id: uuid.UUID | str) -> Agent | None:
    """The agent, or None."""
    return cx.find(Agent, agent_id, _visible(cx), "agent_id")


@reads
def require_agent(cx: Context, agent_id: uuid.UUID | str) -> Agent:
    """The agent, or :class:`~dbcore.NotFound`."""
    return cx.one(Agent, agent_id, _visible(cx))


@reads
def list_agents(cx: Context, *, enabled: bool | None = None) -> list[Agent]:
    """Every agent (a view: its own), by name; ``enabled`` filters."""
    statement = _visible(cx).order_by(Agent.name, Agent.id)
    if enabled is not None:
        statement = statement.where(Agent.enabled.is_(bool(enabled)))
    return list(cx.session.scalars(statement))


def update_agent(
    cx: Context,
    agent_id: uuid.UUID | str,
    *,
    name: str | None = None,
    bio: str | None = None,
    settings: dict[str, Any] | None = None,
    enabled: bool | None = None,
) -> Agent:
    """Change the given fields. ``settings`` is merged into the stored ones (nested dicts merge;
    a key given as None is removed), never replaced wholesale."""
    agent = cx.one(Agent, agent_id, _visible(cx))
    if name is not None:
        agent.name = non_empty(name, "name", 200)
    if bio is not None:
        agent.bio = bio
    if settings is not None:
        agent.settings = merged(agent.settings or {}, json_object(settings, "settings"))
    if enabled is not None:
        agent.enabled = enabled
    cx.session.flush()
    return agent


def delete_agent(cx: Context, agent_id: uuid.UUID | str) -> bool:
    """Delete the agent and everything that belongs to it (entities, worlds and their rooms,
    memories, logs, cache, tasks, activities). A hard delete, as ElizaOS does; False if absent."""
    agent = cx.find(Agent, agent_id, _visible(cx), "agent_id")
    if agent is None:
        return False
    with cx.session.begin_nested():
        purge(cx.session, agents=[agent.id])
    return True


def upsert_agents(cx: Context, agents: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
    """Insert or update agents by id (``dbcore.upsert``); returns their ids in order."""
    rows = [dict(row) for row in agents]
    for row in rows:
        if "id" in row:
            row["id"] = as_uuid(row["id"])
            if cx.scope is not None:
                cx.owner(row["id"], "id")
        elif cx.scope is not None:
            row["id"] = cx.scope
    return upsert(cx.session, Agent, rows, key="id")


class AgentMethods:
    """The adapter methods of this module (bound to both adapters by :mod:`dbcore.adapter.facade`)."""

    create_agent = bind(create_agent)
    get_agent = bind(get_agent)
    require_agent = bind(require_agent)
    list_agents = bind(list_agents)
    update_agent = bind(update_agent)
    delete_agent = bind(delete_agent)
    upsert_agents = bind(upsert_agents)
