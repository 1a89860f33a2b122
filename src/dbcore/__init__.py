"""dbcore: the data layer of an AI-agent platform, on SQLAlchemy 2.x.

Importing dbcore loads neither chromadb nor pinecone; those backends are
imported only when configured.
"""

from dbcore.config import Settings
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
from dbcore.health import ConnectionInfo, connection_info, is_connected
from dbcore.session import get_session, get_sessionmaker, run_in_transaction, session_dependency

__version__ = "0.1.0"

__all__ = [
    "Settings",
    "create_engine",
    "get_engine",
    "dispose_engines",
    "get_session",
    "get_sessionmaker",
    "session_dependency",
    "run_in_transaction",
    "is_connected",
    "connection_info",
    "ConnectionInfo",
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
