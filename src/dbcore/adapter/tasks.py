"""Tasks an agent schedules for itself."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from dbcore.adapter.context import (
    Context,
    Page,
    as_enum,
    as_uuid,
    json_object,
    keyset_page,
    non_empty,
    string_list,
    where_ids,
)
from dbcore.adapter.operation import bind, reads
from dbcore.DB_Agents import Task, TaskStatus

__all__ = ["TaskMethods"]

#: Tasks read to apply a tag filter in Python (JSON-list containment differs per dialect).
_TAG_SCAN = 1000


def _tasks(cx: Context) -> sa.Select[Task]:
    return cx.confine(sa.select(Task), Task.agent_id)


def _link(value: Any, name: str) -> uuid.UUID | None:
    return None if value is None else as_uuid(value, name)


def create_task(
    cx: Context,
    name: str,
    *,
    agent_id: uuid.UUID | None = None,
    description: str = "",
    tags: Sequence[str] = (),
    room_id: uuid.UUID | None = None,
    world_id: uuid.UUID | None = None,
    entity_id: uuid.UUID | None = None,
    metadata: dict[str, Any] | None = None,
    due_at: datetime.datetime | None = None,
    status: TaskStatus | int | str = "pending",
    id: uuid.UUID | None = None,  # noqa: A002
) -> Task:
    """Schedule a task."""
    non_empty(name, "name", 200)
    task = Task(
        id=as_uuid(id) if id is not None else uuid.uuid4(),
        agent_id=cx.owner(agent_id),
        name=name,
        description=description,
        tags=string_list(tags, "tags"),
        room_id=_link(room_id, "room_id"),
        world_id=_link(world_id, "world_id"),
        entity_id=_link(entity_id, "entity_id"),
        meta=json_object(metadata or {}, "metadata"),
        due_at=due_at,
        status=as_enum(TaskStatus, status, "status"),
    )
    with cx.session.begin_nested():
        cx.session.add(task)
        cx.session.flush()
    return task


@reads
def get_task(cx: Context, task_id: uuid.UUID | str) -> Task | None:
    """The task, or None."""
    return cx.find(Task, task_id, _tasks(cx), "task_id")


@reads
def require_task(cx: Context, task_id: uuid.UUID | str) -> Task:
    """The task, or :class:`~dbcore.NotFound`."""
    return cx.one(Task, task_id, _tasks(cx))


@reads
def get_tasks(
    cx: Context,
    *,
    agent_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    world_id: uuid.UUID | None = None,
    entity_id: uuid.UUID | None = None,
    name: str | None = None,
    status: TaskStatus | int | str | None = None,
    tags: Sequence[str] | None = None,
    limit: int = 50,
    after: str | None = None,
) -> Page[Task]:
    """One page of tasks matching the filters, newest first; ``tags``: tasks having all of them.

    The tag filter runs in Python over at most 1,000 tasks matching the other filters.
    """
    statement = where_ids(
        _tasks(cx),
        (Task.agent_id, agent_id, "agent_id"),
        (Task.room_id, room_id, "room_id"),
        (Task.world_id, world_id, "world_id"),
        (Task.entity_id, entity_id, "entity_id"),
    )
    if name is not None:
        statement = statement.where(Task.name == name)
    if status is not None:
        statement = statement.where(Task.status == as_enum(TaskStatus, status, "status"))
    if tags is None:
        return keyset_page(cx.session, statement, Task, limit=limit, after=after)
    wanted = set(string_list(tags, "tags"))
    page = keyset_page(cx.session, statement, Task, limit=_TAG_SCAN, after=after)
    return Page([task for task in page.items if wanted <= set(task.tags or ())][:limit], None)


@reads
def get_tasks_by_name(cx: Context, name: str) -> list[Task]:
    """Every task called ``name``, newest first."""
    return list(cx.session.scalars(_tasks(cx).where(Task.name == name).order_by(Task.created_at.desc(), Task.id)))


def update_task(
    cx: Context,
    task_id: uuid.UUID | str,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    status: TaskStatus | int | str | None = None,
    due_at: datetime.datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> Task:
    """Change the given fields (tags and metadata are replaced)."""
    task = cx.one(Task, task_id, _tasks(cx))
    if status is not None:
        task.status = as_enum(TaskStatus, status, "status")
    if tags is not None:
        task.tags = string_list(tags, "tags")
    if metadata is not None:
        task.meta = json_object(metadata, "metadata")
    for field, value in (("name", name), ("description", description), ("due_at", due_at)):
        if value is not None:
            setattr(task, field, value)
    cx.session.flush()
    return task


def delete_task(cx: Context, task_id: uuid.UUID | str) -> bool:
    """Delete a task; False when there is none with that id."""
    return cx.remove(Task, task_id, _tasks(cx), "task_id")


class TaskMethods:
    """The adapter methods of this module (bound to both adapters by :mod:`dbcore.adapter.facade`)."""

    create_task = bind(create_task)
    get_task = bind(get_task)
    require_task = bind(require_task)
    get_tasks = bind(get_tasks)
    get_tasks_by_name = bind(get_tasks_by_name)
    update_task = bind(update_task)
    delete_task = bind(delete_task)
