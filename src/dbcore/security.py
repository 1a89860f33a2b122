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

Core ``insert()``/``update()``/``delete()`` statements on a system table are
guarded too, however they reach a dbcore engine (an engine ``before_execute``
hook in :mod:`dbcore.hooks`): on a session's connection
(``session.connection().execute(...)``) the session's key decides; on a
connection no session owns (``engine.connect()``, ``engine.begin()``) the write
is refused unless the connection or statement carries the execution option
``dbcore_system=True`` (:data:`SYSTEM_EXECUTION_OPTION`), for bootstrapping code
that holds the database credentials; dbcore's migrations run with it. Raw SQL
(``text()``, ``exec_driver_sql``) is not parsed and stays outside the guard, as does
a lightweight ``sa.table("activity_types")``: the check matches the system ``Table``.

The guard keeps application code paths from changing lookup data by accident;
it is not a boundary against someone holding the database credentials, who can
always write SQL directly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, ORMExecuteState, Session
from sqlalchemy.sql.dml import UpdateBase

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
    "check_connection_write",
    "note_system_tables",
    "system_table_written",
    "create_system_key",
    "SYSTEM_INFO_KEY",
    "SYSTEM_EXECUTION_OPTION",
]

KEY_PREFIX = "dbk_"
PREFIX_LENGTH = 12
SYSTEM_INFO_KEY = "dbcore.system"
_API_KEY_INFO_KEY = "dbcore.api_key"
#: Execution option that lets a connection no session owns write system tables (bootstrapping, migrations).
SYSTEM_EXECUTION_OPTION = "dbcore_system"

# The tables of every class that says ``__system__``, filled as mappers are made (hooks.py
# feeds them), and their names: the check on every statement is one set lookup by name.
_system_tables: set[sa.Table] = set()
_system_names: set[str] = set()


def generate_api_key() -> str:
    """A new random API key. Show it once; store only :func:`hash_api_key` of it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def note_system_tables(mappers: Iterable[Mapper[Any]]) -> None:
    """Remember the tables of the mapped classes among ``mappers`` that say ``__system__ = True``."""
    for mapper in mappers:
        table = mapper.local_table
        if getattr(mapper.class_, "__system__", False) and isinstance(table, sa.Table):
            _system_tables.add(table)
            _system_names.add(table.name)


def _unaliased(table: Any) -> Any:
    while isinstance(table, sa.Alias):
        table = table.element
    return table


def system_table_written(statement: Any) -> str | None:
    """The system table an INSERT/UPDATE/DELETE statement writes (None for anything else).

    Runs on every statement, so a miss costs one name lookup. A hit is confirmed on
    the ``Table`` object itself: another ``MetaData``'s table of the same name (or a
    lightweight ``sa.table()``) is not a system table.
    """
    if not isinstance(statement, UpdateBase) or getattr(_unaliased(statement.table), "name", None) not in _system_names:
        return None
    table = _unaliased(statement.entity_description.get("table"))  # the Table, without ORM annotations
    return table.name if table in _system_tables else None


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
        system_table_written(state.statement) is not None
    )
    if system and not is_system_session(state.session):
        raise _deny(state.session, getattr(table, "name", "the target"))


def check_connection_write(table: str, session: Session | None, options: Mapping[str, Any]) -> None:
    """Refuse a Core write of system table ``table`` on a dbcore connection that may not make it.

    ``session`` owns the connection (None for a bare one); ``options`` are the
    statement's execution options, the connection's included.
    """
    if session is not None:
        if not is_system_session(session):
            raise _deny(session, table)
    elif not options.get(SYSTEM_EXECUTION_OPTION):
        raise PermissionDenied(
            f"{table} is a system table and this connection belongs to no session; write it in "
            "get_session(api_key=...), or, in bootstrapping code that holds the database credentials, "
            f"on a connection with execution_options({SYSTEM_EXECUTION_OPTION}=True)"
        )


def create_system_key(session: Session, *, name: str = "system", key: str | None = None) -> str:
    """Store a system key (``key`` or a new random one) and return it; only its hash is written."""
    plain = key or generate_api_key()
    if len(plain) < 24:
        raise PermissionDenied("a system API key must be at least 24 characters long")
    session.add(ApiKey(name=name, prefix=key_prefix(plain), key_hash=hash_api_key(plain), is_system=True))
    session.flush()
    return plain
