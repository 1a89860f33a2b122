"""Worlds, rooms, participants and relationships."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from dbcore.adapter.cascade import purge
from dbcore.adapter.context import Context, as_enum, as_uuid, as_uuids, json_object, string_list
from dbcore.adapter.operation import bind, reads
from dbcore.DB_Entities import Entity, Participant, ParticipantState, Relationship, Room, RoomKind, World
from dbcore.errors import NotFound, ValidationError

__all__ = ["RoomMethods"]

_ROOM_FIELDS = ("name", "kind", "world_id", "source", "channel_ref", "metadata", "id", "participants")


# --- worlds ----------------------------------------------------------------------------


def _worlds(cx: Context) -> sa.Select[World]:
    return cx.confine(sa.select(World), World.agent_id)


def create_world(
    cx: Context,
    name: str,
    *,
    agent_id: uuid.UUID | None = None,
    server_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
    id: uuid.UUID | None = None,  # noqa: A002
) -> World:
    """Create a world (a server, a workspace) of an agent."""
    world = World(
        id=as_uuid(id) if id is not None else uuid.uuid4(),
        name=name,
        agent_id=cx.owner(agent_id),
        server_ref=server_ref,
        meta=json_object(metadata or {}, "metadata"),
    )
    cx.session.add(world)
    cx.session.flush()
    return world


@reads
def get_world(cx: Context, world_id: uuid.UUID | str) -> World | None:
    """The world, or None."""
    return cx.find(World, world_id, _worlds(cx), "world_id")


@reads
def list_worlds(cx: Context) -> list[World]:
    """Every world (a view: its agent's), by name."""
    return list(cx.session.scalars(_worlds(cx).order_by(World.name, World.id)))


def update_world(
    cx: Context,
    world_id: uuid.UUID | str,
    *,
    name: str | None = None,
    server_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> World:
    """Change the given fields (``metadata`` is replaced)."""
    world = cx.one(World, world_id, _worlds(cx))
    if name is not None:
        world.name = name
    if server_ref is not None:
        world.server_ref = server_ref
    if metadata is not None:
        world.meta = json_object(metadata, "metadata")
    cx.session.flush()
    return world


def delete_world(cx: Context, world_id: uuid.UUID | str) -> bool:
    """Delete the world, its rooms and what hangs off them; False if absent."""
    world = cx.find(World, world_id, _worlds(cx), "world_id")
    if world is None:
        return False
    with cx.session.begin_nested():
        purge(cx.session, worlds=[world.id])
    return True


# --- rooms -----------------------------------------------------------------------------


def _rooms(cx: Context) -> sa.Select[Room]:
    return cx.confine_rooms(sa.select(Room), Room.id)


def _visible_entities(cx: Context, ids: Sequence[uuid.UUID]) -> None:
    statement = cx.confine(sa.select(Entity.id), Entity.agent_id).where(Entity.id.in_(ids)) if ids else None
    found = set(cx.session.scalars(statement)) if statement is not None else set()
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise NotFound(f"entities has no row with id {', '.join(missing)}" + (" for this agent" if cx.scope else ""))


def _new_room(cx: Context, item: Mapping[str, Any], position: int) -> tuple[Room, list[uuid.UUID]]:
    if not isinstance(item, Mapping):
        raise ValidationError(f"room #{position} must be a dict, got {type(item).__name__}")
    unknown = sorted(set(item) - set(_ROOM_FIELDS))
    if unknown:
        raise ValidationError(f"room #{position} has unknown keys {', '.join(unknown)}")
    world_id = item.get("world_id")
    if world_id is not None:
        cx.one(World, world_id, _worlds(cx))
    participants = as_uuids(item.get("participants") or [], "participants")
    _visible_entities(cx, participants)
    if cx.scope is not None and world_id is None and not participants:
        raise ValidationError(
            f"room #{position}: a room made through an agent's view needs one of its worlds (world_id) "
            "or its entities (participants), or the view could not see it"
        )
    room = Room(
        id=as_uuid(item["id"]) if item.get("id") is not None else uuid.uuid4(),
        kind=as_enum(RoomKind, item.get("kind"), "kind"),
        name=item.get("name") or "",
        world_id=as_uuid(world_id, "world_id") if world_id is not None else None,
        source=item.get("source") or "",
        channel_ref=item.get("channel_ref"),
        meta=json_object(item.get("metadata") or {}, "metadata"),
    )
    return room, participants


def create_rooms(cx: Context, rooms: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
    """Create rooms (dicts of :meth:`create_room`'s arguments); returns their ids."""
    made = [_new_room(cx, item, position) for position, item in enumerate(rooms)]
    with cx.session.begin_nested():
        cx.session.add_all([room for room, _ in made])
        cx.session.flush()
        cx.session.add_all([Participant(room_id=room.id, entity_id=e) for room, entities in made for e in entities])
        cx.session.flush()
    return [room.id for room, _ in made]


def create_room(
    cx: Context,
    *,
    kind: RoomKind | int | str,
    name: str = "",
    world_id: uuid.UUID | None = None,
    source: str = "",
    channel_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
    participants: Sequence[uuid.UUID] = (),
    id: uuid.UUID | None = None,  # noqa: A002
) -> Room:
    """Create a room, with ``participants`` (entity ids) added at once."""
    item: dict[str, Any] = {"kind": kind, "name": name, "world_id": world_id, "source": source}
    item.update(channel_ref=channel_ref, metadata=metadata, participants=list(participants), id=id)
    [room_id] = create_rooms(cx, [item])
    return cx.one(Room, room_id)


@reads
def get_room(cx: Context, room_id: uuid.UUID | str) -> Room | None:
    """The room, or None."""
    return cx.find(Room, room_id, _rooms(cx), "room_id")


@reads
def get_rooms_by_ids(cx: Context, room_ids: Sequence[uuid.UUID]) -> list[Room]:
    """The rooms of ``room_ids`` that exist (and the view may see), in the order asked."""
    ids = as_uuids(room_ids, "room_ids")
    found = {room.id: room for room in cx.session.scalars(_rooms(cx).where(Room.id.in_(ids)))} if ids else {}
    return [found[i] for i in ids if i in found]


@reads
def get_rooms_by_world(cx: Context, world_id: uuid.UUID | str) -> list[Room]:
    """The rooms of a world, by name."""
    statement = _rooms(cx).where(Room.world_id == as_uuid(world_id, "world_id"))
    return list(cx.session.scalars(statement.order_by(Room.name, Room.id)))


@reads
def list_rooms(cx: Context) -> list[Room]:
    """Every room (a view: the ones it takes part in), by name."""
    return list(cx.session.scalars(_rooms(cx).order_by(Room.name, Room.id)))


def update_room(
    cx: Context,
    room_id: uuid.UUID | str,
    *,
    name: str | None = None,
    kind: RoomKind | int | str | None = None,
    source: str | None = None,
    channel_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Room:
    """Change the given fields (``metadata`` is replaced)."""
    room = cx.one(Room, room_id, _rooms(cx))
    if kind is not None:
        room.kind = as_enum(RoomKind, kind, "kind")
    for field, value in (("name", name), ("source", source), ("channel_ref", channel_ref)):
        if value is not None:
            setattr(room, field, value)
    if metadata is not None:
        room.meta = json_object(metadata, "metadata")
    cx.session.flush()
    return room


def delete_room(cx: Context, room_id: uuid.UUID | str) -> bool:
    """Delete the room with its participants, components, memories and logs; False if absent."""
    room = cx.find(Room, room_id, _rooms(cx), "room_id")
    if room is None:
        return False
    with cx.session.begin_nested():
        purge(cx.session, rooms=[room.id])
    return True


def delete_rooms_by_world(cx: Context, world_id: uuid.UUID | str) -> int:
    """Delete every room of a world (the world stays); returns how many."""
    world = cx.one(World, world_id, _worlds(cx))
    rooms = list(cx.session.scalars(sa.select(Room.id).where(Room.world_id == world.id)))
    with cx.session.begin_nested():
        purge(cx.session, rooms=rooms)
    return len(rooms)


@reads
def get_rooms_for_participant(cx: Context, entity_id: uuid.UUID | str) -> list[uuid.UUID]:
    """Ids of the rooms ``entity_id`` takes part in."""
    return get_rooms_for_participants(cx, [as_uuid(entity_id, "entity_id")])


@reads
def get_rooms_for_participants(cx: Context, entity_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Ids of the rooms any of ``entity_ids`` takes part in."""
    ids = as_uuids(entity_ids, "entity_ids")
    if not ids:
        return []
    statement = cx.confine_rooms(
        sa.select(Participant.room_id).where(Participant.entity_id.in_(ids)), Participant.room_id
    )
    return list(dict.fromkeys(cx.session.scalars(statement.order_by(Participant.room_id))))


# --- participants ----------------------------------------------------------------------


def add_participants(cx: Context, room_id: uuid.UUID | str, entity_ids: Sequence[uuid.UUID]) -> bool:
    """Add entities to a room; ones already in it are left as they are."""
    room = cx.one(Room, room_id, _rooms(cx))
    ids = list(dict.fromkeys(as_uuids(entity_ids, "entity_ids")))
    _visible_entities(cx, ids)
    present = (
        set(
            cx.session.scalars(
                sa.select(Participant.entity_id).where(Participant.room_id == room.id, Participant.entity_id.in_(ids))
            )
        )
        if ids
        else set()
    )
    cx.session.add_all([Participant(room_id=room.id, entity_id=e) for e in ids if e not in present])
    cx.session.flush()
    return True


def remove_participant(cx: Context, room_id: uuid.UUID | str, entity_id: uuid.UUID | str) -> bool:
    """Take an entity out of a room; False when it was not in it."""
    participant = _participant(cx, room_id, entity_id)
    if participant is None:
        return False
    cx.session.delete(participant)
    cx.session.flush()
    return True


def _participant(cx: Context, room_id: Any, entity_id: Any) -> Participant | None:
    statement = sa.select(Participant).where(
        Participant.room_id == as_uuid(room_id, "room_id"), Participant.entity_id == as_uuid(entity_id, "entity_id")
    )
    return cx.session.scalars(cx.confine_rooms(statement, Participant.room_id)).first()


@reads
def get_participants_for_room(cx: Context, room_id: uuid.UUID | str) -> list[uuid.UUID]:
    """Ids of the entities in a room."""
    room = cx.one(Room, room_id, _rooms(cx))
    return list(
        cx.session.scalars(
            sa.select(Participant.entity_id).where(Participant.room_id == room.id).order_by(Participant.created_at)
        )
    )


@reads
def get_participants_for_entity(cx: Context, entity_id: uuid.UUID | str) -> list[Participant]:
    """The memberships of an entity (its rooms and states)."""
    statement = sa.select(Participant).where(Participant.entity_id == as_uuid(entity_id, "entity_id"))
    return list(cx.session.scalars(cx.confine_rooms(statement, Participant.room_id).order_by(Participant.created_at)))


@reads
def is_room_participant(cx: Context, room_id: uuid.UUID | str, entity_id: uuid.UUID | str) -> bool:
    """True when the entity takes part in the room."""
    return _participant(cx, room_id, entity_id) is not None


@reads
def get_participant_state(cx: Context, room_id: uuid.UUID | str, entity_id: uuid.UUID | str) -> ParticipantState | None:
    """FOLLOWED, MUTED or None; :class:`~dbcore.NotFound` when the entity is not in the room."""
    participant = _participant(cx, room_id, entity_id)
    if participant is None:
        raise NotFound(f"entity {entity_id} is not a participant of room {room_id}")
    return participant.state


def set_participant_state(
    cx: Context, room_id: uuid.UUID | str, entity_id: uuid.UUID | str, state: ParticipantState | int | str | None
) -> None:
    """Follow, mute (a member, its value or lowercase name) or clear (None)."""
    value = None if state is None else as_enum(ParticipantState, state, "state")
    participant = _participant(cx, room_id, entity_id)
    if participant is None:
        raise NotFound(f"entity {entity_id} is not a participant of room {room_id}")
    participant.state = value
    cx.session.flush()


# --- relationships ---------------------------------------------------------------------


def _relationships(cx: Context) -> sa.Select[Relationship]:
    if cx.scope is None:
        return sa.select(Relationship)
    mine = sa.select(Entity.id).where(Entity.agent_id == cx.scope)
    return sa.select(Relationship).where(Relationship.source_id.in_(mine))


def create_relationship(
    cx: Context,
    source_id: uuid.UUID | str,
    target_id: uuid.UUID | str,
    *,
    tags: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
) -> Relationship:
    """A directed link between two entities; one per (source, target) pair."""
    source, target = as_uuid(source_id, "source_id"), as_uuid(target_id, "target_id")
    _visible_entities(cx, [source])
    cx.one(Entity, target)
    relationship = Relationship(
        source_id=source, target_id=target, tags=string_list(tags, "tags"), meta=json_object(metadata or {}, "metadata")
    )
    with cx.session.begin_nested():
        cx.session.add(relationship)
        cx.session.flush()
    return relationship


def update_relationship(
    cx: Context,
    relationship_id: uuid.UUID | str,
    *,
    tags: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Relationship:
    """Replace the tags and/or metadata of a relationship."""
    relationship = cx.one(Relationship, relationship_id, _relationships(cx))
    if tags is not None:
        relationship.tags = string_list(tags, "tags")
    if metadata is not None:
        relationship.meta = json_object(metadata, "metadata")
    cx.session.flush()
    return relationship


@reads
def get_relationship(cx: Context, source_id: uuid.UUID | str, target_id: uuid.UUID | str) -> Relationship | None:
    """The relationship from ``source_id`` to ``target_id``, or None."""
    statement = _relationships(cx).where(
        Relationship.source_id == as_uuid(source_id, "source_id"),
        Relationship.target_id == as_uuid(target_id, "target_id"),
    )
    return cx.session.scalars(statement).first()


@reads
def get_relationships(
    cx: Context, entity_id: uuid.UUID | str, *, tags: Sequence[str] | None = None
) -> list[Relationship]:
    """Relationships from or to an entity; with ``tags``, those having any of them.

    The tag filter runs in Python: JSON-list containment is spelled differently on each
    dialect, and one entity's relationships are few.
    """
    entity = as_uuid(entity_id, "entity_id")
    wanted = set(string_list(tags, "tags")) if tags is not None else None
    statement = _relationships(cx).where(sa.or_(Relationship.source_id == entity, Relationship.target_id == entity))
    found = cx.session.scalars(statement.order_by(Relationship.created_at, Relationship.id))
    return [r for r in found if wanted is None or wanted & set(r.tags or ())]


class RoomMethods:
    """The adapter methods of this module (bound to both adapters by :mod:`dbcore.adapter.facade`)."""

    create_world = bind(create_world)
    get_world = bind(get_world)
    list_worlds = bind(list_worlds)
    update_world = bind(update_world)
    delete_world = bind(delete_world)
    create_rooms = bind(create_rooms)
    create_room = bind(create_room)
    get_room = bind(get_room)
    get_rooms_by_ids = bind(get_rooms_by_ids)
    get_rooms_by_world = bind(get_rooms_by_world)
    list_rooms = bind(list_rooms)
    update_room = bind(update_room)
    delete_room = bind(delete_room)
    delete_rooms_by_world = bind(delete_rooms_by_world)
    get_rooms_for_participant = bind(get_rooms_for_participant)
    get_rooms_for_participants = bind(get_rooms_for_participants)
    add_participants = bind(add_participants)
    remove_participant = bind(remove_participant)
    get_participants_for_room = bind(get_participants_for_room)
    get_participants_for_entity = bind(get_participants_for_entity)
    is_room_participant = bind(is_room_participant)
    get_participant_state = bind(get_participant_state)
    set_participant_state = bind(set_participant_state)
    create_relationship = bind(create_relationship)
    update_relationship = bind(update_relationship)
    get_relationship = bind(get_relationship)
    get_relationships = bind(get_relationships)
