"""dbcore: the data layer of an AI-agent platform, on SQLAlchemy 2.x.

Importing dbcore loads neither chromadb nor pinecone; those backends are
imported only when configured.
"""

from dbcore.base import Base, make_base
from dbcore.checks import assert_models_ok, check_models
from dbcore.config import Settings
from dbcore.DB_Agents import Activity, ActivityType, Agent, Task, TaskStatus
from dbcore.DB_Auth import ApiKey, MFAMethod, MFAMethodType, Permission, PermissionGrant, User
from dbcore.DB_Entities import Component, Entity, Participant, ParticipantState, Relationship, Room, RoomKind, World
from dbcore.DB_Memories import CacheEntry, Memory, MemoryEmbedding, MemoryKind, VectorSpace
from dbcore.engine import create_engine, dispose_engines, get_engine
from dbcore.errors import (
    CheckViolation,
    ConcurrencyError,
    ConfigurationError,
    ConnectionFailed,
    DatabaseError,
    DataError,
    DbcoreError,
    DimensionMismatchError,
    DuplicateKeyError,
    ForeignKeyViolation,
    IntegrityViolation,
    NotNullViolation,
    PermissionDenied,
    QueryTimeout,
    TransactionOutcomeUnknown,
    ValidationError,
)
from dbcore.events import on_saved, on_transition
from dbcore.health import ConnectionInfo, connection_info, is_connected
from dbcore.Mixins import BaseMixin, ExpirableMixin, ParentMixin, SoftDeleteMixin, UpdateMixin
from dbcore.refs import bind_reverse, ref_mixins
from dbcore.seeding import seed
from dbcore.session import get_session, get_sessionmaker, run_in_transaction, session_dependency, system_session
from dbcore.types import PK_TYPE, SqlEnum, UTCDateTime, Vector, new_uuid, utcnow
from dbcore.vectorstores import F, Filter, Match, Record, VectorStore, get_vector_store, register_vector_store

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
    "run_in_transaction",
    "system_session",
    "is_connected",
    "connection_info",
    "ConnectionInfo",
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
    # errors
    "DbcoreError",
    "ConfigurationError",
    "ValidationError",
    "DimensionMismatchError",
    "PermissionDenied",
    "DatabaseError",
    "ConnectionFailed",
    "QueryTimeout",
    "ConcurrencyError",
    "IntegrityViolation",
    "DuplicateKeyError",
    "ForeignKeyViolation",
    "NotNullViolation",
    "CheckViolation",
    "DataError",
    "TransactionOutcomeUnknown",
]
