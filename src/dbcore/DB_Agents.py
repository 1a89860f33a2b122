"""Agents domain: agents, activity types (system), agent activities and tasks."""

from __future__ import annotations

import datetime
import uuid
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dbcore.base import Base
from dbcore.DB_Auth import OptionalOwnerUserRefMixin
from dbcore.Mixins import BaseMixin, SoftDeleteMixin, UpdateMixin
from dbcore.refs import ref_mixins
from dbcore.types import PK_TYPE, SqlEnum, Unicode, UnicodeText, utcnow

if TYPE_CHECKING:
    from dbcore.DB_Entities import Entity, World
    from dbcore.DB_Memories import CacheEntry, Log, Memory

__all__ = [
    "Agent",
    "AgentRefMixin",
    "OptionalAgentRefMixin",
    "ActivityType",
    "ActivityTypeRefMixin",
    "OptionalActivityTypeRefMixin",
    "Activity",
    "ActivityRefMixin",
    "OptionalActivityRefMixin",
    "TaskStatus",
    "Task",
    "TaskRefMixin",
    "OptionalTaskRefMixin",
]


class Agent(Base, BaseMixin, UpdateMixin, SoftDeleteMixin, OptionalOwnerUserRefMixin):
    """An AI agent: its character, settings and owner."""

    __tablename__ = "agents"

    name: Mapped[str] = mapped_column(Unicode(200), index=True, comment="Display name of the agent.")
    bio: Mapped[str] = mapped_column(
        UnicodeText, default="", comment="Biography / system prompt that defines the agent."
    )
    settings: Mapped[dict[str, Any]] = mapped_column(
        default=dict, comment="Agent configuration (model, plugins...) as JSON."
    )
    enabled: Mapped[bool] = mapped_column(default=True, comment="False stops the agent without deleting it.")

    if TYPE_CHECKING:
        # Backrefs added at run time by the reference mixins of other models.
        activities: Mapped[list[Activity]]
        tasks: Mapped[list[Task]]
        worlds: Mapped[list[World]]
        entities: Mapped[list[Entity]]
        memories: Mapped[list[Memory]]
        cache_entries: Mapped[list[CacheEntry]]
        logs: Mapped[list[Log]]


# ref_mixins() builds its classes at run time; type checkers read these declarations instead
# (tests/test_typing.py keeps them equal to what ref_mixins() generates).
if TYPE_CHECKING:

    class AgentRefMixin:
        agent_id: Mapped[uuid.UUID]
        agent: Mapped[Agent]

    class OptionalAgentRefMixin:
        agent_id: Mapped[uuid.UUID | None]
        agent: Mapped[Agent | None]

else:
    AgentRefMixin, OptionalAgentRefMixin = ref_mixins(Agent)


class ActivityType(Base, BaseMixin, UpdateMixin):
    """Lookup of what an agent activity records. A system table, seeded."""

    __tablename__ = "activity_types"
    __system__ = True

    name: Mapped[str] = mapped_column(Unicode(100), unique=True, comment="Short name of the activity type.")
    description: Mapped[str] = mapped_column(Unicode(500), default="", comment="What an activity of this type means.")

    seed_list = [
        {
            "id": "FFFFFFFF-FFFF-FFFF-0000-FFFFFFFFFFFF",
            "name": "Error",
            "description": "The agent has encountered an error.",
        },
        {
            "id": "FFFFFFFF-FFFF-FFFF-00FF-FFFFFFFFFFFF",
            "name": "Warning",
            "description": "The agent has encountered a warning.",
        },
        {"id": "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "name": "Thinking", "description": "The agent is thinking."},
    ]

    if TYPE_CHECKING:
        activities: Mapped[list[Activity]]  # backref of Activity.activity_type


if TYPE_CHECKING:

    class ActivityTypeRefMixin:
        activity_type_id: Mapped[uuid.UUID]
        activity_type: Mapped[ActivityType]

    class OptionalActivityTypeRefMixin:
        activity_type_id: Mapped[uuid.UUID | None]
        activity_type: Mapped[ActivityType | None]

else:
    ActivityTypeRefMixin, OptionalActivityTypeRefMixin = ref_mixins(ActivityType)


class Activity(Base, BaseMixin, AgentRefMixin, ActivityTypeRefMixin):
    """Something an agent did or ran into, for its activity log."""

    __tablename__ = "activities"
    __table_args__ = (sa.Index(None, "agent_id", "occurred_at"),)

    message: Mapped[str] = mapped_column(UnicodeText, default="", comment="Human-readable account of the activity.")
    data: Mapped[dict[str, Any] | None] = mapped_column(comment="Structured details of the activity (JSON).")
    occurred_at: Mapped[datetime.datetime] = mapped_column(default=utcnow, comment="When the activity happened (UTC).")


if TYPE_CHECKING:

    class ActivityRefMixin:
        activity_id: Mapped[uuid.UUID]
        activity: Mapped[Activity]

    class OptionalActivityRefMixin:
        activity_id: Mapped[uuid.UUID | None]
        activity: Mapped[Activity | None]

else:
    ActivityRefMixin, OptionalActivityRefMixin = ref_mixins(Activity)


class TaskStatus(IntEnum):
    PENDING = 1
    RUNNING = 2
    DONE = 3
    FAILED = 4
    CANCELLED = 5


class Task(Base, BaseMixin, UpdateMixin, AgentRefMixin):
    """Work an agent has scheduled for itself."""

    __tablename__ = "tasks"
    __table_args__ = (sa.Index(None, "agent_id", "status"),)

    name: Mapped[str] = mapped_column(Unicode(200), comment="What the task is.")
    description: Mapped[str] = mapped_column(UnicodeText, default="", comment="Details for the agent carrying it out.")
    tags: Mapped[list[Any]] = mapped_column(default=list, comment="Labels for finding tasks (JSON list of strings).")
    status: Mapped[TaskStatus] = mapped_column(
        SqlEnum(TaskStatus), default=TaskStatus.PENDING, comment="Where the task stands."
    )
    due_at: Mapped[datetime.datetime | None] = mapped_column(comment="When the task should run or be done by (UTC).")
    # The entities domain sits above this one (it imports Agent), so these links are plain
    # foreign keys by table name rather than RoomRefMixin & co., and carry no relationship.
    room_id: Mapped[uuid.UUID | None] = mapped_column(PK_TYPE, sa.ForeignKey("rooms.id"), index=True)
    world_id: Mapped[uuid.UUID | None] = mapped_column(PK_TYPE, sa.ForeignKey("worlds.id"), index=True)
    entity_id: Mapped[uuid.UUID | None] = mapped_column(PK_TYPE, sa.ForeignKey("entities.id"), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", default=dict, comment="What the runtime needs to carry the task out (JSON)."
    )


if TYPE_CHECKING:

    class TaskRefMixin:
        task_id: Mapped[uuid.UUID]
        task: Mapped[Task]

    class OptionalTaskRefMixin:
        task_id: Mapped[uuid.UUID | None]
        task: Mapped[Task | None]

else:
    TaskRefMixin, OptionalTaskRefMixin = ref_mixins(Task)
