"""dbcore: the data layer of an AI-agent platform, on SQLAlchemy 2.x.

Importing dbcore loads neither chromadb nor pinecone; those backends are
imported only when configured. Public names are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbcore.adapter import AsyncDatabaseAdapter, DatabaseAdapter
    from dbcore.base import Base, make_base
    from dbcore.checks import assert_models_ok, check_models
    from dbcore.config import Settings
    from dbcore.DB_Agents import Activity, ActivityType, Agent, Task, TaskStatus
    from dbcore.DB_Auth import ApiKey, MFAMethod, MFAMethodType, Permission, PermissionGrant, User
    from dbcore.DB_Entities import Component, Entity, Participant, ParticipantState, Relationship, Room, RoomKind, World
    from dbcore.DB_Memories import CacheEntry, Log, Memory, MemoryEmbedding, MemoryKind, VectorSpace
    from dbcore.engine import (
        create_async_engine,
        create_engine,
        dispose_async_engines,
        dispose_engines,
        get_async_engine,
        get_engine,
    )
    from dbcore.errors import (
        AuthenticationFailed,
        CheckViolation,
        ConcurrencyError,
        ConfigurationError,
        ConnectionFailed,
        DatabaseError,
        DatabaseNotFound,
        DataError,
        DbcoreError,
        DimensionMismatchError,
        DuplicateKeyError,
        ForeignKeyViolation,
        IntegrityViolation,
        MigrationError,
        NotFound,
        NotNullViolation,
        PermissionDenied,
        QueryTimeout,
        SchemaMissing,
        TransactionOutcomeUnknown,
        ValidationError,
    )
    from dbcore.events import on_saved, on_transition
    from dbcore.health import (
        ConnectionInfo,
        connection_error,
        connection_info,
        connection_info_async,
        is_connected,
        is_connected_async,
    )
    from dbcore.Mixins import BaseMixin, ExpirableMixin, ParentMixin, SoftDeleteMixin, UpdateMixin
    from dbcore.plugins import Plugin
    from dbcore.refs import bind_reverse, ref_mixins
    from dbcore.seeding import seed
    from dbcore.session import (
        async_session_dependency,
        get_async_session,
        get_async_sessionmaker,
        get_session,
        get_sessionmaker,
        run_in_transaction,
        run_in_transaction_async,
        session_dependency,
        session_on,
        system_session,
    )
    from dbcore.types import PK_TYPE, SqlEnum, UTCDateTime, Vector, new_uuid, utcnow
    from dbcore.upserts import upsert
    from dbcore.vectorstores import F, Filter, Match, Record, VectorStore, get_vector_store, register_vector_store

# Where each public name lives. ``import dbcore`` loads none of them: a command or a
# service pays for what it uses (benchmarks/import_time.py). The first name asked for
# loads dbcore.models too, so every model is registered, as ``import dbcore`` promised.
_HOMES = {
    "Base": "dbcore.base",
    "make_base": "dbcore.base",
    "assert_models_ok": "dbcore.checks",
    "check_models": "dbcore.checks",
    "Settings": "dbcore.config",
    "Activity": "dbcore.DB_Agents",
    "ActivityType": "dbcore.DB_Agents",
    "Agent": "dbcore.DB_Agents",
    "Task": "dbcore.DB_Agents",
    "TaskStatus": "dbcore.DB_Agents",
    "ApiKey": "dbcore.DB_Auth",
    "MFAMethod": "dbcore.DB_Auth",
    "MFAMethodType": "dbcore.DB_Auth",
    "Permission": "dbcore.DB_Auth",
    "PermissionGrant": "dbcore.DB_Auth",
    "User": "dbcore.DB_Auth",
    "Component": "dbcore.DB_Entities",
    "Entity": "dbcore.DB_Entities",
    "Participant": "dbcore.DB_Entities",
    "ParticipantState": "dbcore.DB_Entities",
    "Relationship": "dbcore.DB_Entities",
    "Room": "dbcore.DB_Entities",
    "RoomKind": "dbcore.DB_Entities",
    "World": "dbcore.DB_Entities",
    "CacheEntry": "dbcore.DB_Memories",
    "Log": "dbcore.DB_Memories",
    "Memory": "dbcore.DB_Memories",
    "MemoryEmbedding": "dbcore.DB_Memories",
    "MemoryKind": "dbcore.DB_Memories",
    "VectorSpace": "dbcore.DB_Memories",
    "create_engine": "dbcore.engine",
    "dispose_engines": "dbcore.engine",
    "get_engine": "dbcore.engine",
    "create_async_engine": "dbcore.engine",
    "get_async_engine": "dbcore.engine",
    "dispose_async_engines": "dbcore.engine",
    "CheckViolation": "dbcore.errors",
    "ConcurrencyError": "dbcore.errors",
    "ConfigurationError": "dbcore.errors",
    "ConnectionFailed": "dbcore.errors",
    "DatabaseNotFound": "dbcore.errors",
    "AuthenticationFailed": "dbcore.errors",
    "SchemaMissing": "dbcore.errors",
    "DatabaseError": "dbcore.errors",
    "DataError": "dbcore.errors",
    "DbcoreError": "dbcore.errors",
    "DimensionMismatchError": "dbcore.errors",
    "DuplicateKeyError": "dbcore.errors",
    "ForeignKeyViolation": "dbcore.errors",
    "IntegrityViolation": "dbcore.errors",
    "MigrationError": "dbcore.errors",
    "NotNullViolation": "dbcore.errors",
    "PermissionDenied": "dbcore.errors",
    "NotFound": "dbcore.errors",
    "DatabaseAdapter": "dbcore.adapter",
    "AsyncDatabaseAdapter": "dbcore.adapter",
    "QueryTimeout": "dbcore.errors",
    "TransactionOutcomeUnknown": "dbcore.errors",
    "ValidationError": "dbcore.errors",
    "on_saved": "dbcore.events",
    "on_transition": "dbcore.events",
    "ConnectionInfo": "dbcore.health",
    "connection_info": "dbcore.health",
    "connection_error": "dbcore.health",
    "is_connected": "dbcore.health",
    "is_connected_async": "dbcore.health",
    "connection_info_async": "dbcore.health",
    "BaseMixin": "dbcore.Mixins",
    "ExpirableMixin": "dbcore.Mixins",
    "ParentMixin": "dbcore.Mixins",
    "SoftDeleteMixin": "dbcore.Mixins",
    "UpdateMixin": "dbcore.Mixins",
    "bind_reverse": "dbcore.refs",
    "ref_mixins": "dbcore.refs",
    "seed": "dbcore.seeding",
    "get_session": "dbcore.session",
    "get_sessionmaker": "dbcore.session",
    "run_in_transaction": "dbcore.session",
    "session_dependency": "dbcore.session",
    "session_on": "dbcore.session",
    "system_session": "dbcore.session",
    "get_async_session": "dbcore.session",
    "get_async_sessionmaker": "dbcore.session",
    "async_session_dependency": "dbcore.session",
    "run_in_transaction_async": "dbcore.session",
    "PK_TYPE": "dbcore.types",
    "SqlEnum": "dbcore.types",
    "UTCDateTime": "dbcore.types",
    "Vector": "dbcore.types",
    "new_uuid": "dbcore.types",
    "utcnow": "dbcore.types",
    "upsert": "dbcore.upserts",
    "Plugin": "dbcore.plugins",
    "F": "dbcore.vectorstores",
    "Filter": "dbcore.vectorstores",
    "Match": "dbcore.vectorstores",
    "Record": "dbcore.vectorstores",
    "VectorStore": "dbcore.vectorstores",
    "get_vector_store": "dbcore.vectorstores",
    "register_vector_store": "dbcore.vectorstores",
}


__version__ = "0.1.0"

__all__ = [
    # configuration, engines, sessions, health
    "Settings",
    "create_engine",
    "get_engine",
    "dispose_engines",
    "get_session",
    "get_sessionmaker",
    "session_dependency",
    "session_on",
    "run_in_transaction",
    "system_session",
    "is_connected",
    "connection_info",
    "connection_error",
    "ConnectionInfo",
    # the same on asyncio
    "create_async_engine",
    "get_async_engine",
    "dispose_async_engines",
    "get_async_session",
    "get_async_sessionmaker",
    "async_session_dependency",
    "run_in_transaction_async",
    "is_connected_async",
    "connection_info_async",
    # modeling toolkit
    "Base",
    "make_base",
    "PK_TYPE",
    "Vector",
    "SqlEnum",
    "UTCDateTime",
    "new_uuid",
    "utcnow",
    "BaseMixin",
    "UpdateMixin",
    "SoftDeleteMixin",
    "ExpirableMixin",
    "ParentMixin",
    "ref_mixins",
    "bind_reverse",
    "seed",
    "upsert",
    "Plugin",
    "check_models",
    "assert_models_ok",
    "on_saved",
    "on_transition",
    # vector stores (backends are imported only when used)
    "VectorStore",
    "get_vector_store",
    "register_vector_store",
    "Record",
    "Match",
    "F",
    "Filter",
    # dbcore's models
    "User",
    "ApiKey",
    "MFAMethod",
    "MFAMethodType",
    "Permission",
    "PermissionGrant",
    "Agent",
    "ActivityType",
    "Activity",
    "Task",
    "TaskStatus",
    "World",
    "Room",
    "RoomKind",
    "Entity",
    "Participant",
    "ParticipantState",
    "Relationship",
    "Component",
    "Memory",
    "MemoryKind",
    "MemoryEmbedding",
    "VectorSpace",
    "CacheEntry",
    "Log",
    # errors
    "DbcoreError",
    "ConfigurationError",
    "ValidationError",
    "DimensionMismatchError",
    "PermissionDenied",
    "NotFound",
    "DatabaseAdapter",
    "AsyncDatabaseAdapter",
    "DatabaseError",
    "ConnectionFailed",
    "DatabaseNotFound",
    "AuthenticationFailed",
    "SchemaMissing",
    "QueryTimeout",
    "ConcurrencyError",
    "IntegrityViolation",
    "DuplicateKeyError",
    "ForeignKeyViolation",
    "NotNullViolation",
    "CheckViolation",
    "DataError",
    "TransactionOutcomeUnknown",
    "MigrationError",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dbcore' has no attribute {name!r}")
    importlib.import_module("dbcore.models")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
