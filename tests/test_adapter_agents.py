"""Adapter agents: create, get, list, update (merged settings), delete with everything that belongs to the agent."""

from __future__ import annotations

import uuid

import pytest

import dbcore
from dbcore.DB_Agents import Activity, Agent, Task
from dbcore.DB_Entities import Component, Entity, Participant, Relationship, Room, World
from dbcore.DB_Memories import CacheEntry, Log, Memory, MemoryEmbedding
from tests.adapter_scene import count, scene, vector
from tests.api_modes import AdapterView


def test_create_get_require_list(adapter: AdapterView) -> None:
    agent = adapter.create_agent("Ada", bio="helpful", settings={"model": "small"})
    assert adapter.get_agent(agent.id).settings == {"model": "small"}
    assert adapter.require_agent(str(agent.id)).name == "Ada"
    assert adapter.get_agent(uuid.uuid4()) is None
    with pytest.raises(dbcore.NotFound, match="agents has no row with id"):
        adapter.require_agent(uuid.uuid4())
    assert agent.id in [a.id for a in adapter.list_agents(enabled=True)]
    assert [a.id for a in adapter.for_agent(agent.id).list_agents()] == [agent.id]


def test_update_merges_settings(adapter: AdapterView) -> None:
    agent = adapter.create_agent("Ada", settings={"model": {"name": "a", "size": 1}, "plugins": ["x"], "old": 1})
    updated = adapter.update_agent(agent.id, settings={"model": {"size": 2}, "old": None}, enabled=False)
    assert updated.settings == {"model": {"name": "a", "size": 2}, "plugins": ["x"]}
    assert adapter.get_agent(agent.id).enabled is False
    with pytest.raises(dbcore.NotFound):
        adapter.update_agent(uuid.uuid4(), name="x")


def test_bad_input_writes_nothing(adapter: AdapterView) -> None:
    before = count(adapter, Agent)
    for call in (
        lambda: adapter.create_agent(""),
        lambda: adapter.create_agent("x", settings=["not", "a", "dict"]),
        lambda: adapter.upsert_agents([{"name": "ok"}, {"name": "bad", "nosuch": 1}]),
    ):
        with pytest.raises(dbcore.ValidationError):
            call()
    assert count(adapter, Agent) == before


def test_upsert_agents(adapter: AdapterView) -> None:
    fresh = uuid.uuid4()
    existing = adapter.create_agent("old")
    ids = adapter.upsert_agents([{"id": fresh, "name": "new"}, {"id": existing.id, "name": "renamed"}])
    assert ids == [fresh, existing.id]
    assert adapter.get_agent(existing.id).name == "renamed" and adapter.get_agent(fresh).name == "new"


def test_delete_takes_everything_of_the_agent_and_nothing_else(adapter: AdapterView) -> None:
    doomed, kept = scene(adapter, "doomed"), scene(adapter, "kept")
    for s, seed in ((doomed, 1), (kept, 2)):
        first = adapter.create_memory(
            agent_id=s.agent, entity_id=s.user, room_id=s.room, content={"text": "hi"}, embedding=vector(seed)
        )
        adapter.create_memory(
            agent_id=s.agent, entity_id=s.user, room_id=s.room, content={"text": "re"}, parent_id=first.id
        )
        adapter.log(type="action", body={}, agent_id=s.agent, room_id=s.room, entity_id=s.user)
        adapter.set_cache("k", 1, agent_id=s.agent)
        adapter.create_task("t", agent_id=s.agent, room_id=s.room, world_id=s.world, entity_id=s.user)
        adapter.create_component(s.user, "profile", {"a": 1}, room_id=s.room, world_id=s.world)
        adapter.create_relationship(s.user, s.friend, tags=["friend"])
    # another agent's task pointing at the doomed room keeps its row, without the link
    foreign = adapter.create_task("watch", agent_id=kept.agent, room_id=doomed.room)
    with dbcore.get_session(adapter.settings) as session:
        session.add(Activity(agent_id=doomed.agent, activity_type_id=uuid.UUID("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")))

    assert adapter.delete_agent(doomed.agent) is True
    assert adapter.delete_agent(doomed.agent) is False
    for model, where in (
        (Agent, {"id": doomed.agent}),
        (Entity, {"agent_id": doomed.agent}),
        (World, {"agent_id": doomed.agent}),
        (Room, {"id": doomed.room}),
        (Memory, {"agent_id": doomed.agent}),
        (Log, {"agent_id": doomed.agent}),
        (CacheEntry, {"agent_id": doomed.agent}),
        (Task, {"agent_id": doomed.agent}),
        (Activity, {"agent_id": doomed.agent}),
        (Participant, {"room_id": doomed.room}),
        (Component, {"entity_id": doomed.user}),
        (Relationship, {"source_id": doomed.user}),
    ):
        assert count(adapter, model, **where) == 0, model.__name__
    assert count(adapter, Memory, agent_id=kept.agent) == 2 and count(adapter, MemoryEmbedding) >= 1
    assert count(adapter, Participant, room_id=kept.room) == 2 and count(adapter, Log, agent_id=kept.agent) == 1
    assert adapter.get_task(foreign.id).room_id is None


def test_a_view_sees_and_changes_only_its_agent(adapter: AdapterView) -> None:
    mine, theirs = adapter.create_agent("mine"), adapter.create_agent("theirs")
    view = adapter.for_agent(mine.id)
    assert view.get_agent(theirs.id) is None
    with pytest.raises(dbcore.NotFound):
        view.update_agent(theirs.id, name="hijacked")
    assert view.delete_agent(theirs.id) is False
    with pytest.raises(dbcore.PermissionDenied):
        view.create_agent("other", id=uuid.uuid4())
    with pytest.raises(dbcore.PermissionDenied):
        view.upsert_agents([{"id": theirs.id, "name": "x"}])
    assert adapter.get_agent(theirs.id).name == "theirs"
