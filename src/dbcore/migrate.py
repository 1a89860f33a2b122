"""Alembic, driven from dbcore's settings: upgrade, downgrade, pending revisions and drift.

The migration scripts live in the repository's ``migrations/`` folder and are
shipped inside the wheel as ``dbcore/_migrations``, so an installed dbcore can
migrate a database (``dbcore migrate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import dbcore.models  # noqa: F401  (registers every table on Base.metadata)
from dbcore.base import Base
from dbcore.config import Settings
from dbcore.engine import create_engine
from dbcore.types import GUID, PLAIN_DDL_TYPES, SqlEnum, UTCDateTime, Vector

__all__ = [
    "migrations_dir",
    "alembic_config",
    "upgrade",
    "downgrade",
    "current_revision",
    "head_revision",
    "pending_revisions",
    "schema_drift",
    "include_object",
    "render_item",
    "prepare_connection",
    "HNSW_INDEX",
    "HNSW_INDEX_NAME",
    "hnsw_index_sql",
]

#: The pgvector HNSW index on memory_embeddings: made by the migrations where pgvector exists.
HNSW_INDEX_NAME = "ix_memory_embeddings_embedding_hnsw"
HNSW_INDEX = HNSW_INDEX_NAME


def hnsw_index_sql(dims: int) -> str:
    """The CREATE INDEX statement of the HNSW cosine index (halfvec above 2,000 dimensions)."""
    dims = int(dims)
    target = "embedding vector_cosine_ops" if dims <= 2000 else f"(embedding::halfvec({dims})) halfvec_cosine_ops"
    return f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX_NAME} ON memory_embeddings USING hnsw ({target})"


def migrations_dir() -> Path:
    """The folder holding ``env.py`` and ``versions/``: packaged copy first, then the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("dbcore's migration scripts are missing from this installation; reinstall dbcore")


def alembic_config(settings: Settings | None = None, *, connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    config.attributes["dbcore_settings"] = settings or Settings.from_env()
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(settings: Settings | None = None, revision: str = "head", *, sql: bool = False) -> None:
    command.upgrade(alembic_config(settings), revision, sql=sql)


def downgrade(settings: Settings | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config(Settings(database_url="sqlite:///:memory:"))).get_current_head()


def current_revision(settings: Settings | None = None) -> str | None:
    engine = create_engine(settings or Settings.from_env(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def pending_revisions(settings: Settings | None = None) -> list[str]:
    """Revisions between the database's current one and head, oldest first."""
    settings = settings or Settings.from_env()
    script = ScriptDirectory.from_config(alembic_config(settings))
    current = current_revision(settings)
    revisions = [rev.revision for rev in script.iterate_revisions("head", current)]
    return list(reversed(revisions))


def schema_drift(settings: Settings | None = None) -> list[Any]:
    """Differences between the migrated database and the models (empty when they agree), as ``alembic check`` sees them."""

    engine = create_engine(settings or Settings.from_env(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_object": include_object, "compare_type": True, "compare_server_default": False},
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Leave out of autogenerate what the migrations manage per dialect: the pgvector HNSW index."""
    if type_ == "index" and name == HNSW_INDEX:
        return False
    if type_ == "table" and name == "alembic_version":
        return False
    return True


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render dbcore's column types so generated revisions import cleanly.

    Types with their own storage per dialect render as themselves; the checked
    wrappers of a plain SQLAlchemy type (text, JSON, booleans, integers) render as
    that type, ``sa.Unicode(length=200)``: a migration needs only the DDL, and their
    constructors do not take the wrapped type's arguments (``none_as_null``).
    """

    if type_ != "type":
        return False
    if isinstance(obj, PLAIN_DDL_TYPES):
        return f"sa.{obj.impl_instance!r}"
    if isinstance(obj, GUID):
        rendered = "dbcore.types.GUID()"
    elif isinstance(obj, UTCDateTime):
        rendered = "dbcore.types.UTCDateTime()"
    elif isinstance(obj, Vector):
        rendered = f"dbcore.types.Vector({obj.dim})"
    elif isinstance(obj, SqlEnum):
        module = obj.enum_class.__module__
        autogen_context.imports.add(f"import {module}")
        rendered = f"dbcore.types.SqlEnum({module}.{obj.enum_class.__qualname__})"
    else:
        return False
    autogen_context.imports.add("import dbcore.types")
    return rendered


def prepare_connection(connection: sa.Connection) -> None:
    """Before migrating: on PostgreSQL, create the ``vector`` extension when the server has it."""
    if connection.dialect.name != "postgresql":
        return
    available = connection.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").scalar()
    if available:
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    # End the transaction the probe began: alembic commits only a transaction it opened itself.
    connection.commit()
    connection.dialect.dbcore_pgvector = bool(available)  # type: ignore[attr-defined]
