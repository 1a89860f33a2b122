"""Adapter worlds, rooms, participants, relationships, entities and components; and what a view may see of them."""

from __future__ import annotations

import uuid

import pytest

import dbcore
from dbcore.DB_Entities import Component, Entity, Participant, ParticipantState, Relationship, Room, RoomKind, World
from dbcore.DB_Memories import Memory
from tests.adapter_scene import count, scene
from tests.api_modes import AdapterView


def test_worlds(adapter: AdapterView) -> None:
    s = scene(adapter)
    world = adapter.create_world("guild", agent_id=s.agent, server_ref="srv", metadata={"a": 1})
    assert adapter.get_world(world.id).server_ref == "srv"
    assert {w.id for w in adapter.for_agent(s.agent).list_worlds()} == {s.world, world.id}
    assert adapter.update_world(world.id, name="renamed", metadata={"b": 2}).meta == {"b": 2}
    assert adapter.delete_world(world.id) is True and adapter.get_world(world.id) is None
    assert adapter.delete_world(world.id) is False
    with pytest.raises(dbcore.NotFound):
        adapter.update_world(uuid.uuid4(), name="x")


def test_rooms(adapter: AdapterView) -> None:
    s = scene(adapter)
    ids = adapter.create_rooms(
        [{"kind": RoomKind.DM, "world_id": s.world}, {"kind": 4, "name": "b", "world_id": s.world}]
    )
    assert [r.id for r in adapter.get_rooms_by_ids([ids[1], uuid.uuid4(), ids[0]])] == [ids[1], ids[0]]
    assert adapter.get_room(ids[1]).kind is RoomKind.CHANNEL
    assert {r.id for r in adapter.get_rooms_by_world(s.world)} == {s.room, *ids}
    assert s.room in {r.id for r in adapter.list_rooms()}
    assert adapter.update_room(ids[0], name="dm", kind="thread", metadata={"x": 1}).kind is RoomKind.THREAD
    assert adapter.delete_room(ids[0]) is True and adapter.get_room(ids[0]) is None
    adapter.create_memory(agent_id=s.agent, entity_id=s.user, room_id=s.room, content={"text": "x"})
    assert adapter.delete_rooms_by_world(s.world) == 2
    assert count(adapter, Room, world_id=s.world) == 0 and count(adapter, Memory, room_id=s.room) == 0
    assert count(adapter, Participant, room_id=s.room) == 0 and adapter.get_world(s.world) is not None


def test_bad_rooms_write_nothing(adapter: AdapterView) -> None:
    s = scene(adapter)
    before = count(adapter, Room)
    for bad in ({"kind": "nosuch"}, {"kind": True}, {"kind": RoomKind.DM, "nosuch": 1}, {"kind": 2, "metadata": [1]}):
        with pytest.raises(dbcore.ValidationError):
            adapter.create_rooms([{"kind": 2, "world_id": s.world}, bad])
    with pytest.raises(dbcore.NotFound, match="worlds has no row"):
        adapter.create_room(kind="dm", world_id=uuid.uuid4())
    assert count(adapter, Room) == before


def test_participants(adapter: AdapterView) -> None:
    s = scene(adapter)
    [third] = adapter.create_entities([{"agent_id": s.agent, "names": ["third"]}])
    assert adapter.add_participants(s.room, [s.user, third]) is True  # user already in: ignored
    assert set(adapter.get_participants_for_room(s.room)) == {s.user, s.friend, third}
    assert adapter.is_room_participant(s.room, third) and adapter.get_rooms_for_participant(third) == [s.room]
    assert adapter.get_rooms_for_participants([third, s.user]) == [s.room]
    assert [p.room_id for p in adapter.get_participants_for_entity(s.user)] == [s.room]
    assert adapter.get_participant_state(s.room, s.user) is None
    adapter.set_participant_state(s.room, s.user, "muted")
    assert adapter.get_participant_state(s.room, s.user) is ParticipantState.MUTED
    adapter.set_participant_state(s.room, s.user, None)
    assert adapter.get_participant_state(s.room, s.user) is None
    with pytest.raises(dbcore.ValidationError, match="state='loud'"):
        adapter.set_participant_state(s.room, s.user, "loud")
    assert adapter.remove_participant(s.room, third) is True and adapter.remove_participant(s.room, third) is False
    with pytest.raises(dbcore.NotFound):
        adapter.get_participant_state(s.room, third)


def test_relationships(adapter: AdapterView) -> None:
    s = scene(adapter)
    rel = adapter.create_relationship(s.user, s.friend, tags=["friend", "colleague"], metadata={"since": 2020})
    assert (
        adapter.get_relationship(s.user, s.friend).id == rel.id and adapter.get_relationship(s.friend, s.user) is None
    )
    assert [r.id for r in adapter.get_relationships(s.friend)] == [rel.id]
    assert (
        adapter.get_relationships(s.user, tags=["enemy"]) == []
        and len(adapter.get_relationships(s.user, tags=["friend"])) == 1
    )
    assert adapter.update_relationship(rel.id, tags=["blocked"]).tags == ["blocked"]
    before = count(adapter, Relationship)
    with pytest.raises(dbcore.DuplicateKeyError):
        adapter.create_relationship(s.user, s.friend)
    with pytest.raises(dbcore.ValidationError, match="tags must be a list of strings"):
        adapter.create_relationship(s.friend, s.user, tags="friend")
    assert count(adapter, Relationship) == before


def test_entities_and_components(adapter: AdapterView) -> None:
    s = scene(adapter)
    fresh = uuid.uuid4()
    assert adapter.create_entities(
        [{"id": s.user, "agent_id": s.agent}, {"id": fresh, "agent_id": s.agent, "names": ["n"]}]
    ) == [s.user, fresh]
    assert adapter.get_entity(s.user).names == ["user"]  # the existing one was left as it was
    component = adapter.create_component(s.user, "profile", {"age": 3}, world_id=s.world)
    [user] = adapter.get_entities_by_ids([s.user])
    assert [c.id for c in user.components] == [component.id]
    assert {e.id for e in adapter.get_entities_for_room(s.room, include_components=True)} == {s.user, s.friend}
    assert adapter.update_entity(fresh, names=["m"], metadata={"k": 1}).names == ["m"]
    assert adapter.upsert_entities([{"id": fresh, "agent_id": s.agent, "names": ["o"]}]) == [fresh]
    assert adapter.get_entity(fresh).names == ["o"]
    assert adapter.get_component(s.user, "profile", world_id=s.world).data == {"age": 3}
    assert adapter.get_component(s.user, "wallet") is None and len(adapter.get_components(s.user)) == 1
    assert adapter.update_component(component.id, data={"age": 4}).data == {"age": 4}
    assert adapter.delete_component(component.id) is True and adapter.delete_component(component.id) is False
    before = count(adapter, Entity)
    with pytest.raises(dbcore.ValidationError, match="names must be a list of strings"):
        adapter.create_entities([{"agent_id": s.agent}, {"agent_id": s.agent, "names": "solo"}])
    assert count(adapter, Entity) == before


def test_a_view_sees_only_its_agents_rooms_and_entities(adapter: AdapterView) -> None:
    mine, theirs = scene(adapter, "mine"), scene(adapter, "theirs")
    view = adapter.for_agent(mine.agent)
    assert view.get_room(theirs.room) is None and view.get_world(theirs.world) is None
    assert view.get_entity(theirs.user) is None and view.get_entities_by_ids([theirs.user]) == []
    assert theirs.room not in {r.id for r in view.list_rooms()} and view.get_rooms_by_world(theirs.world) == []
    assert view.get_rooms_for_participant(theirs.user) == [] and view.get_participants_for_entity(theirs.user) == []
    assert not view.is_room_participant(theirs.room, theirs.user)
    assert view.get_relationships(theirs.user) == [] and view.get_components(theirs.user) == []
    for call in (
        lambda: view.update_room(theirs.room, name="x"),
        lambda: view.update_world(theirs.world, name="x"),
        lambda: view.update_entity(theirs.user, names=["x"]),
        lambda: view.add_participants(theirs.room, [mine.user]),
        lambda: view.add_participants(mine.room, [theirs.user]),
        lambda: view.get_participants_for_room(theirs.room),
        lambda: view.set_participant_state(theirs.room, theirs.user, "muted"),
        lambda: view.create_component(theirs.user, "x", {}),
        lambda: view.create_relationship(theirs.user, mine.user),
        lambda: view.delete_rooms_by_world(theirs.world),
        lambda: view.create_room(kind="dm", world_id=theirs.world),
    ):
        with pytest.raises(dbcore.NotFound):
            call()
    with pytest.raises(dbcore.PermissionDenied):
        view.create_world("w", agent_id=theirs.agent)
    with pytest.raises(dbcore.PermissionDenied):
        view.create_entities([{"agent_id": theirs.agent}])
    with pytest.raises(dbcore.ValidationError, match="needs one of its worlds"):
        view.create_room(kind="dm")
    assert view.delete_room(theirs.room) is False and view.delete_world(theirs.world) is False
    assert count(adapter, Room, id=theirs.room) == 1 and count(adapter, World, id=theirs.world) == 1
    assert (
        count(adapter, Component, entity_id=theirs.user) == 0 and count(adapter, Participant, room_id=theirs.room) == 2
    )
