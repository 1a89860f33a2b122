"""System tables and the system API key.

A mapped class with ``__system__ = True`` may only be inserted, updated or
deleted in a session opened with a valid system API key
(``get_session(api_key=...)``). Every other session on a dbcore engine gets
:class:`~dbcore.errors.PermissionDenied` when it flushes such a change, or when
it executes a bulk ``insert()``/``update()``/``delete()`` on such a table, and
nothing is written. Reading stays open to everyone.

Keys are random tokens (``dbk_`` + 43 URL-safe characters). The database keeps
only their SHA-256 digest and a short prefix; a key is checked by looking up its
prefix and comparing digests in constant time. SHA-256 without a slow KDF is
enough because the keys carry 256 bits of randomness: there is no dictionary to
guess from.

The guard keeps application code paths from changing lookup data by accident;
it is not a boundary against someone holding the database credentials, who can
always write SQL directly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import ORMExecuteState, Session

from dbcore.base import Base
from dbcore.DB_Auth import ApiKey
from dbcore.errors import PermissionDenied
from dbcore.seeding import SEEDING_INFO_KEY
from dbcore.types import utcnow

__all__ = [
    "generate_api_key",
    "hash_api_key",
    "key_prefix",
    "is_system_session",
    "remember_api_key",
    "check_flush",
    "check_statement",
    "create_system_key",
    "SYSTEM_INFO_KEY",
]

KEY_PREFIX = "dbk_"
PREFIX_LENGTH = 12
SYSTEM_INFO_KEY = "dbcore.system"
_API_KEY_INFO_KEY = "dbcore.api_key"


def generate_api_key() -> str:
    """A new random API key. Show it once; store only :func:`hash_api_key` of it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def _is_system_table(table: sa.Table) -> bool:
    return any(
        mapper.local_table is table and getattr(mapper.class_, "__system__", False) for mapper in Base.registry.mappers
    )


def _verify(session: Session, key: str) -> bool:
    """True when ``key`` is a valid (not revoked, not expired) system key stored in the database."""
    digest = hash_api_key(key)
    now = utcnow()
    with session.no_autoflush:
        candidates = session.execute(
            sa.select(ApiKey.id, ApiKey.key_hash, ApiKey.is_system, ApiKey.revoked_at, ApiKey.expires_at).where(
                ApiKey.prefix == key_prefix(key)
            )
        ).all()
    valid = False
    for row in candidates:
        # Compare every candidate, so timing does not reveal which one matched.
        matches = hmac.compare_digest(row.key_hash, digest)
        usable = row.is_system and row.revoked_at is None and (row.expires_at is None or row.expires_at > now)
        valid = valid or (matches and usable)
    return valid


def is_system_session(session: Session) -> bool:
    """Whether ``session`` may write system tables (its key is checked once, on first need)."""
    state = session.info.get(SYSTEM_INFO_KEY)
    if state is None:
        key = session.info.get(_API_KEY_INFO_KEY)
        state = isinstance(key, str) and bool(key) and _verify(session, key)
        session.info[SYSTEM_INFO_KEY] = state
    return bool(state) or bool(session.info.get(SEEDING_INFO_KEY))


def _deny(session: Session, what: str) -> PermissionDenied:
    reason = (
        "the API key given is not a valid system key" if session.info.get(_API_KEY_INFO_KEY) else "no API key was given"
    )
    return PermissionDenied(
        f"{what} is a system table and may only be written by a session opened with the system API key "
        f"({reason}); use get_session(api_key=...)"
    )


def remember_api_key(session: Session, api_key: str | None) -> None:
    """Keep the key a session was opened with, in memory only, for the check when it writes."""
    if api_key:
        session.info[_API_KEY_INFO_KEY] = api_key


def check_flush(session: Session, on_dbcore: Callable[[Any], bool]) -> None:
    """Refuse a flush that writes a system table without the system key (``on_dbcore``: the object's bind is dbcore's)."""
    # Dirty objects without net changes write nothing, so they need no permission.
    changed = [*session.new, *session.deleted, *(obj for obj in session.dirty if session.is_modified(obj))]
    system = [obj for obj in changed if getattr(type(obj), "__system__", False) and on_dbcore(obj)]
    if system and not is_system_session(session):
        raise _deny(session, type(system[0]).__tablename__)


def check_statement(state: ORMExecuteState) -> None:
    """Refuse a bulk INSERT/UPDATE/DELETE statement on a system table without the system key."""
    table = getattr(state.statement, "table", None)
    system = any(getattr(mapper.class_, "__system__", False) for mapper in state.all_mappers) or (
        isinstance(table, sa.Table) and _is_system_table(table)
    )
    if system and not is_system_session(state.session):
        raise _deny(state.session, getattr(table, "name", "the target"))


def create_system_key(session: Session, *, name: str = "system", key: str | None = None) -> str:
    """Store a system key (``key`` or a new random one) and return it; only its hash is written."""
    plain = key or generate_api_key()
    if len(plain) < 24:
        raise PermissionDenied("a system API key must be at least 24 characters long")
    session.add(ApiKey(name=name, prefix=key_prefix(plain), key_hash=hash_api_key(plain), is_system=True))
    session.flush()
    return plain
