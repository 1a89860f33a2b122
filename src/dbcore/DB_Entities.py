"""Entities domain: worlds, rooms, entities, participants, relationships and components."""

from __future__ import annotations

import uuid
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dbcore.base import Base
from dbcore.DB_Agents import AgentRefMixin, OptionalAgentRefMixin
from dbcore.DB_Auth import User
from dbcore.Mixins import BaseMixin, UpdateMixin
from dbcore.refs import bind_reverse, ref_mixins
from dbcore.types import SqlEnum, Unicode

if TYPE_CHECKING:
    from dbcore.DB_Memories import Log, Memory

__all__ = [
    "World",
    "WorldRefMixin",
    "OptionalWorldRefMixin",
    "RoomKind",
    "Room",
    "RoomRefMixin",
    "OptionalRoomRefMixin",
    "Entity",
    "EntityRefMixin",
    "OptionalEntityRefMixin",
    "ParticipantState",
    "Participant",
    "ParticipantRefMixin",
    "OptionalParticipantRefMixin",
    "Relationship",
    "RelationshipRefMixin",
    "OptionalRelationshipRefMixin",
    "Component",
    "ComponentRefMixin",
    "OptionalComponentRefMixin",
]


class World(Base, BaseMixin, UpdateMixin, OptionalAgentRefMixin):
    """A space that groups rooms, such as a server or workspace."""

    __tablename__ = "worlds"

    name: Mapped[str] = mapped_column(Unicode(200), comment="Name of the world.")
    server_ref: Mapped[str | None] = mapped_column(Unicode(255), comment="The world's id on its source platform.")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, comment="Platform-specific details (JSON).")

    if TYPE_CHECKING:
        # Backrefs added at run time by the reference mixins of other models.
        rooms: Mapped[list[Room]]
        components: Mapped[list[Component]]
        memories: Mapped[list[Memory]]


# ref_mixins() builds its classes at run time; type checkers read these declarations instead
# (tests/test_typing.py keeps them equal to what ref_mixins() generates).
if TYPE_CHECKING:

    class WorldRefMixin:
        world_id: Mapped[uuid.UUID]
        world: Mapped[World]

    class OptionalWorldRefMixin:
        world_id: Mapped[uuid.UUID | None]
        world: Mapped[World | None]

else:
    WorldRefMixin, OptionalWorldRefMixin = ref_mixins(World)


class RoomKind(IntEnum):
    SELF = 1
    DM = 2
    GROUP = 3
    CHANNEL = 4
    THREAD = 5
    FEED = 6
    VOICE = 7
    API = 8


class Room(Base, BaseMixin, UpdateMixin, OptionalWorldRefMixin):
    """A conversation place: a channel, a DM, a thread."""

    __tablename__ = "rooms"

    name: Mapped[str] = mapped_column(Unicode(200), default="", comment="Name of the room.")
    kind: Mapped[RoomKind] = mapped_column(SqlEnum(RoomKind), comment="What sort of room this is.")
    source: Mapped[str] = mapped_column(
        Unicode(100), default="", comment="Platform the room lives on (discord, api...)."
    )
    channel_ref: Mapped[str | None] = mapped_column(Unicode(255), comment="The room's id on its source platform.")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, comment="Platform-specific details (JSON).")

    if TYPE_CHECKING:
        # Backrefs added at run time by the reference mixins of other models.
        participants: Mapped[list[Participant]]
        components: Mapped[list[Component]]
        memories: Mapped[list[Memory]]
        logs: Mapped[list[Log]]


if TYPE_CHECKING:

    class RoomRefMixin:
        room_id: Mapped[uuid.UUID]
        room: Mapped[Room]

    class OptionalRoomRefMixin:
        room_id: Mapped[uuid.UUID | None]
        room: Mapped[Room | None]

else:
    RoomRefMixin, OptionalRoomRefMixin = ref_mixins(Room)


class Entity(Base, BaseMixin, UpdateMixin, AgentRefMixin):
    """Someone or something an agent knows: a user, another agent, a bot."""

    __tablename__ = "entities"

    names: Mapped[list[Any]] = mapped_column(default=list, comment="Names the entity goes by (JSON list of strings).")
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", default=dict, comment="What is known about the entity (JSON)."
    )

    if TYPE_CHECKING:
        # Added at run time by bind_reverse() below and the reference mixins of other models.
        users: Mapped[list[User]]
        participants: Mapped[list[Participant]]
        relationships_as_source: Mapped[list[Relationship]]
        relationships_as_target: Mapped[list[Relationship]]
        components: Mapped[list[Component]]
        memories: Mapped[list[Memory]]
        logs: Mapped[list[Log]]


# Late binding as docs/patterns.md describes: users.entity_id is declared in DB_Auth.
bind_reverse(Entity, User, foreign_keys=lambda: [User.entity_id], post_update=True)

if TYPE_CHECKING:

    class EntityRefMixin:
        entity_id: Mapped[uuid.UUID]
        entity: Mapped[Entity]

    class OptionalEntityRefMixin:
        entity_id: Mapped[uuid.UUID | None]
        entity: Mapped[Entity | None]

    class SourceEntityRefMixin:
        source_id: Mapped[uuid.UUID]
        source: Mapped[Entity]

    class TargetEntityRefMixin:
        target_id: Mapped[uuid.UUID]
        target: Mapped[Entity]

else:
    EntityRefMixin, OptionalEntityRefMixin = ref_mixins(Entity)
    SourceEntityRefMixin, _ = ref_mixins(Entity, role="source")
    TargetEntityRefMixin, _ = ref_mixins(Entity, role="target")


class ParticipantState(IntEnum):
    FOLLOWED = 1
    MUTED = 2


class Participant(Base, BaseMixin, UpdateMixin, EntityRefMixin, RoomRefMixin):
    """An entity's membership of a room."""

    __tablename__ = "participants"
    __table_args__ = (sa.UniqueConstraint("entity_id", "room_id"),)

    state: Mapped[ParticipantState | None] = mapped_column(
        SqlEnum(ParticipantState),
        comment="Whether the agent follows or has muted the room for this entity; NULL neither.",
    )


if TYPE_CHECKING:

    class ParticipantRefMixin:
        participant_id: Mapped[uuid.UUID]
        participant: Mapped[Participant]

    class OptionalParticipantRefMixin:
        participant_id: Mapped[uuid.UUID | None]
        participant: Mapped[Participant | None]

else:
    ParticipantRefMixin, OptionalParticipantRefMixin = ref_mixins(Participant)


class Relationship(Base, BaseMixin, UpdateMixin, SourceEntityRefMixin, TargetEntityRefMixin):
    """A directed link between two entities, with tags (friend, colleague, blocked...)."""

    __tablename__ = "relationships"
    __table_args__ = (sa.UniqueConstraint("source_id", "target_id"),)

    tags: Mapped[list[Any]] = mapped_column(default=list, comment="Kinds of relationship (JSON list of strings).")
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", default=dict, comment="Details of the relationship (JSON)."
    )


if TYPE_CHECKING:

    class RelationshipRefMixin:
        relationship_id: Mapped[uuid.UUID]
        relationship: Mapped[Relationship]

    class OptionalRelationshipRefMixin:
        relationship_id: Mapped[uuid.UUID | None]
        relationship: Mapped[Relationship | None]

else:
    RelationshipRefMixin, OptionalRelationshipRefMixin = ref_mixins(Relationship)


class Component(Base, BaseMixin, UpdateMixin, EntityRefMixin, OptionalRoomRefMixin, OptionalWorldRefMixin):
    """Typed JSON data attached to an entity (a profile, preferences, a wallet...)."""

    __tablename__ = "components"
    __table_args__ = (sa.Index(None, "entity_id", "type"),)

    type: Mapped[str] = mapped_column(Unicode(100), comment="Kind of data; names the schema of data.")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="The component's content (JSON).")


if TYPE_CHECKING:

    class ComponentRefMixin:
        component_id: Mapped[uuid.UUID]
        component: Mapped[Component]

    class OptionalComponentRefMixin:
        component_id: Mapped[uuid.UUID | None]
        component: Mapped[Component | None]

else:
    ComponentRefMixin, OptionalComponentRefMixin = ref_mixins(Component)
