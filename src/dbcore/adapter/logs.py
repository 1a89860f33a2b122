"""The agent runtime's log: what it did, with a typed JSON body."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import sqlalchemy as sa

from dbcore.adapter.context import Context, Page, as_uuid, json_object, keyset_page, non_empty, where_ids
from dbcore.adapter.operation import bind, reads
from dbcore.DB_Memories import Log

__all__ = ["LogMethods"]


def log(
    cx: Context,
    *,
    type: str,  # noqa: A002
    body: dict[str, Any],
    agent_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    entity_id: uuid.UUID | None = None,
) -> Log:
    """Write a log entry."""
    non_empty(type, "type", 100)
    entry = Log(
        agent_id=cx.owner(agent_id),
        type=type,
        body=json_object(body, "body"),
        room_id=as_uuid(room_id, "room_id") if room_id is not None else None,
        entity_id=as_uuid(entity_id, "entity_id") if entity_id is not None else None,
    )
    cx.add(entry)
    return entry


@reads
def get_logs(
    cx: Context,
    *,
    agent_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    entity_id: uuid.UUID | None = None,
    type: str | None = None,  # noqa: A002
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
    limit: int = 50,
    after: str | None = None,
    order: str = "desc",
) -> Page[Log]:
    """One page of log entries matching the filters, newest first (``start`` inclusive, ``end`` exclusive)."""
    statement = where_ids(
        cx.confine(sa.select(Log), Log.agent_id),
        (Log.agent_id, agent_id, "agent_id"),
        (Log.room_id, room_id, "room_id"),
        (Log.entity_id, entity_id, "entity_id"),
    )
    if type is not None:
        statement = statement.where(Log.type == type)
    if start is not None:
        statement = statement.where(Log.created_at >= start)
    if end is not None:
        statement = statement.where(Log.created_at < end)
    return keyset_page(cx.session, statement, Log, limit=limit, after=after, order=order)  # type: ignore[arg-type]


def delete_log(cx: Context, log_id: uuid.UUID | str) -> bool:
    """Delete a log entry; False when there is none with that id (a view: none of its agent's)."""
    statement = cx.confine(sa.delete(Log), Log.agent_id).where(Log.id == as_uuid(log_id, "log_id"))  # type: ignore[type-var]
    return bool(cx.session.execute(statement).rowcount)  # type: ignore[attr-defined]


class LogMethods:
    """The adapter methods of this module (bound to both adapters by :mod:`dbcore.adapter.facade`)."""

    log = bind(log)
    get_logs = bind(get_logs)
    delete_log = bind(delete_log)
