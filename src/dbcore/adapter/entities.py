"""Entities (the people and bots an agent knows) and their components."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from dbcore.adapter.context import Context, as_uuid, as_uuids, json_object, non_empty, string_list
from dbcore.adapter.operation import bind, reads
from dbcore.DB_Entities import Component, Entity, Participant
from dbcore.errors import PermissionDenied, ValidationError
from dbcore.upserts import upsert

__all__ = ["EntityMethods"]

_FIELDS = ("id", "agent_id", "names", "metadata")


def _entities(cx: Context) -> sa.Select[Entity]:
    return cx.confine(sa.select(Entity), Entity.agent_id)


def _row(cx: Context, item: Any, position: int) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise ValidationError(f"entity #{position} must be a dict, got {type(item).__name__}")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ValidationError(f"entity #{position} has unknown keys {', '.join(unknown)}")
    return {
        "id": as_uuid(item["id"]) if item.get("id") is not None else uuid.uuid4(),
        "agent_id": cx.owner(item.get("agent_id")),
        "names": string_list(item.get("names") or [], "names"),
        "meta": json_object(item.get("metadata") or {}, "metadata"),
    }


def create_entities(cx: Context, entities: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
    """Create entities (dicts of id, agent_id, names, metadata); returns every id given or made.

    An id that exists already is left as it is, not an error (ElizaOS ``createEntities``).
    """
    rows = [_row(cx, item, position) for position, item in enumerate(entities)]
    ids = [row["id"] for row in rows]
    existing = set(cx.session.scalars(sa.select(Entity.id).where(Entity.id.in_(ids)))) if ids else set()
    cx.add(*(Entity(**row) for row in rows if row["id"] not in existing))
    return ids


@reads
def get_entity(cx: Context, entity_id: uuid.UUID | str) -> Entity | None:
    """The entity with its components, or None."""
    found = get_entities_by_ids(cx, [as_uuid(entity_id, "entity_id")])
    return found[0] if found else None


@reads
def get_entities_by_ids(cx: Context, entity_ids: Sequence[uuid.UUID]) -> list[Entity]:
    """The entities of ``entity_ids`` (in that order) with their components loaded."""
    ids = as_uuids(entity_ids, "entity_ids")
    if not ids:
        return []
    statement = _entities(cx).where(Entity.id.in_(ids)).options(selectinload(Entity.components))
    found = {entity.id: entity for entity in cx.session.scalars(statement)}
    return [found[i] for i in ids if i in found]


@reads
def get_entities_for_room(cx: Context, room_id: uuid.UUID | str, *, include_components: bool = False) -> list[Entity]:
    """The entities taking part in a room."""
    in_room = sa.select(Participant.entity_id).where(Participant.room_id == as_uuid(room_id, "room_id"))
    statement = _entities(cx).where(Entity.id.in_(in_room)).order_by(Entity.created_at, Entity.id)
    if include_components:
        statement = statement.options(selectinload(Entity.components))
    return list(cx.session.scalars(statement))


def update_entity(
    cx: Context,
    entity_id: uuid.UUID | str,
    *,
    names: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Entity:
    """Replace an entity's names and/or metadata."""
    entity = cx.one(Entity, entity_id, _entities(cx))
    if names is not None:
        entity.names = string_list(names, "names")
    if metadata is not None:
        entity.meta = json_object(metadata, "metadata")
    cx.session.flush()
    return entity


def upsert_entities(cx: Context, entities: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
    """Insert or update entities by id (``dbcore.upsert``); returns their ids in order."""
    rows = [_row(cx, item, position) for position, item in enumerate(entities)]
    if cx.scope is not None:
        ids = [row["id"] for row in rows]
        others = cx.session.scalars(sa.select(Entity.id).where(Entity.id.in_(ids), Entity.agent_id != cx.scope)).first()
        if others is not None:
            raise PermissionDenied(f"entity {others} belongs to another agent than {cx.scope}")
    return upsert(cx.session, Entity, rows, key="id")


# --- components ------------------------------------------------------------------------


def _components(cx: Context) -> sa.Select[Component]:
    if cx.scope is None:
        return sa.select(Component)
    return sa.select(Component).where(Component.entity_id.in_(sa.select(Entity.id).where(Entity.agent_id == cx.scope)))


def create_component(
    cx: Context,
    entity_id: uuid.UUID | str,
    type: str,  # noqa: A002
    data: dict[str, Any],
    *,
    room_id: uuid.UUID | None = None,
    world_id: uuid.UUID | None = None,
    id: uuid.UUID | None = None,  # noqa: A002
) -> Component:
    """Attach typed JSON data to an entity."""
    entity = cx.one(Entity, entity_id, _entities(cx))
    non_empty(type, "type", 100)
    component = Component(
        id=as_uuid(id) if id is not None else uuid.uuid4(),
        entity_id=entity.id,
        type=type,
        data=json_object(data, "data"),
        room_id=as_uuid(room_id, "room_id") if room_id is not None else None,
        world_id=as_uuid(world_id, "world_id") if world_id is not None else None,
    )
    cx.add(component)
    return component


@reads
def get_component(
    cx: Context,
    entity_id: uuid.UUID | str,
    type: str,
    *,
    world_id: uuid.UUID | None = None,  # noqa: A002
) -> Component | None:
    """The entity's (oldest) component of ``type`` (in ``world_id`` when given), or None."""
    statement = _components(cx).where(Component.entity_id == as_uuid(entity_id, "entity_id"), Component.type == type)
    if world_id is not None:
        statement = statement.where(Component.world_id == as_uuid(world_id, "world_id"))
    return cx.session.scalars(statement.order_by(Component.created_at, Component.id)).first()


@reads
def get_components(cx: Context, entity_id: uuid.UUID | str, *, world_id: uuid.UUID | None = None) -> list[Component]:
    """Every component of an entity (in ``world_id`` when given)."""
    statement = _components(cx).where(Component.entity_id == as_uuid(entity_id, "entity_id"))
    if world_id is not None:
        statement = statement.where(Component.world_id == as_uuid(world_id, "world_id"))
    return list(cx.session.scalars(statement.order_by(Component.created_at, Component.id)))


def update_component(
    cx: Context,
    component_id: uuid.UUID | str,
    *,
    data: dict[str, Any] | None = None,
    type: str | None = None,  # noqa: A002
) -> Component:
    """Replace a component's data and/or type."""
    component = cx.one(Component, component_id, _components(cx))
    if data is not None:
        component.data = json_object(data, "data")
    if type is not None:
        component.type = type
    cx.session.flush()
    return component


def delete_component(cx: Context, component_id: uuid.UUID | str) -> bool:
    """Delete a component; False when there is none with that id."""
    return cx.remove(Component, component_id, _components(cx), "component_id")


class EntityMethods:
    """The adapter methods of this module (bound to both adapters by :mod:`dbcore.adapter.facade`)."""

    create_entities = bind(create_entities)
    get_entity = bind(get_entity)
    get_entities_by_ids = bind(get_entities_by_ids)
    get_entities_for_room = bind(get_entities_for_room)
    update_entity = bind(update_entity)
    upsert_entities = bind(upsert_entities)
    create_component = bind(create_component)
    get_component = bind(get_component)
    get_components = bind(get_components)
    update_component = bind(update_component)
    delete_component = bind(delete_component)
