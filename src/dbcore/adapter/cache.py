"""The key-value cache with expiry: an expired entry is never returned."""

from __future__ import annotations

import datetime
import math
import uuid
from typing import Any

import sqlalchemy as sa

from dbcore.adapter.context import Context, as_uuid, non_empty
from dbcore.adapter.operation import bind, reads
from dbcore.DB_Memories import CacheEntry
from dbcore.errors import ValidationError
from dbcore.types import utcnow

__all__ = ["CacheMethods"]


def _key(key: Any) -> str:
    return non_empty(key, "key", 255)


def _agent(cx: Context, agent_id: Any) -> uuid.UUID | None:
    """The entry's agent: the view's (forced), the one given, or None for a global entry."""
    if cx.scope is not None:
        return cx.owner(agent_id)
    return None if agent_id is None else as_uuid(agent_id, "agent_id")


def _entry(cx: Context, key: str, agent: uuid.UUID | None) -> sa.Select[CacheEntry]:
    owner = CacheEntry.agent_id.is_(None) if agent is None else CacheEntry.agent_id == agent
    return sa.select(CacheEntry).where(CacheEntry.key == key, owner)


def _live() -> sa.ColumnElement[bool]:
    # Python's UTC clock, as a parameter: the same clock that computed expires_at from ttl.
    return sa.or_(CacheEntry.expires_at.is_(None), CacheEntry.expires_at > utcnow())


def _expiry(ttl: Any) -> datetime.datetime | None:
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, datetime.timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(f"ttl={ttl!r} must be a positive number of seconds, a timedelta, or None (never expires)")
    return utcnow() + datetime.timedelta(seconds=seconds)


@reads
def get_cache(cx: Context, key: str, *, agent_id: uuid.UUID | None = None, default: Any = None) -> Any:
    """The value under ``key``, or ``default`` when there is none or it has expired.

    A stored JSON null comes back as None; pass a sentinel as ``default`` to tell it
    from a missing entry.
    """
    entry = cx.session.scalars(_entry(cx, _key(key), _agent(cx, agent_id)).where(_live())).first()
    return default if entry is None else entry.value


def set_cache(
    cx: Context,
    key: str,
    value: Any,
    *,
    ttl: float | datetime.timedelta | None = None,
    agent_id: uuid.UUID | None = None,
) -> None:
    """Store ``value`` (any JSON) under ``key``, replacing what was there; ``ttl`` seconds or a timedelta."""
    name, agent, expires = _key(key), _agent(cx, agent_id), _expiry(ttl)
    with cx.session.begin_nested():
        entry = cx.session.scalars(_entry(cx, name, agent).with_for_update()).first()
        if entry is None:
            cx.session.add(CacheEntry(key=name, agent_id=agent, value=value, expires_at=expires))
        else:
            entry.value, entry.expires_at = value, expires
        cx.session.flush()


def delete_cache(cx: Context, key: str, *, agent_id: uuid.UUID | None = None) -> bool:
    """Remove the entry under ``key``; False when there was none (expired entries count as none)."""
    entry = cx.session.scalars(_entry(cx, _key(key), _agent(cx, agent_id))).first()
    if entry is None:
        return False
    live = entry.expires_at is None or entry.expires_at > utcnow()
    cx.session.delete(entry)
    cx.session.flush()
    return live


def purge_expired_cache(cx: Context) -> int:
    """Delete expired entries (a view: its agent's only); returns how many."""
    statement = sa.delete(CacheEntry).where(CacheEntry.expires_at.is_not(None), CacheEntry.expires_at <= utcnow())
    if cx.scope is not None:
        statement = statement.where(CacheEntry.agent_id == cx.scope)
    return int(cx.session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


class CacheMethods:
    """The adapter methods of this module (bound to both adapters by :mod:`dbcore.adapter.facade`)."""

    get_cache = bind(get_cache)
    set_cache = bind(set_cache)
    delete_cache = bind(delete_cache)
    purge_expired_cache = bind(purge_expired_cache)
