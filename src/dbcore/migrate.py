"""Alembic, driven from dbcore's settings: upgrade, downgrade, pending revisions and drift.

The migration scripts live in ``src/dbcore/_migrations`` (a data folder of the
package, not a module), so a regular and an editable install of dbcore both
have them: ``dbcore migrate`` and ``dbcore:_migrations:versions`` in a version_locations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError, RevisionError
from alembic.util import CommandError

import dbcore.models  # noqa: F401  (registers every table on Base.metadata)
from dbcore.base import Base
from dbcore.config import Settings
from dbcore.engine import create_engine
from dbcore.errors import MigrationError
from dbcore.security import SYSTEM_EXECUTION_OPTION
from dbcore.types import GUID, PLAIN_DDL_TYPES, SqlEnum, UTCDateTime, Vector

__all__ = [
    "MigrationError",
    "migrations_dir",
    "alembic_config",
    "upgrade",
    "downgrade",
    "current_revision",
    "head_revision",
    "known_revisions",
    "foreign_revisions",
    "missing_tables",
    "pending_revisions",
    "schema_drift",
    "include_object",
    "render_item",
    "prepare_connection",
    "run_env",
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
    """The folder holding ``env.py`` and ``versions/``: ``dbcore/_migrations``, inside the package."""
    candidate = Path(__file__).resolve().parent / "_migrations"
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
    settings = settings or Settings.from_env()
    if not sql:
        _refuse_foreign_history(settings)
    with _revision_errors(revision):
        command.upgrade(alembic_config(settings), revision, sql=sql)


def downgrade(settings: Settings | None = None, revision: str = "base") -> None:
    settings = settings or Settings.from_env()
    _refuse_foreign_history(settings)
    with _revision_errors(revision):
        command.downgrade(alembic_config(settings), revision)


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(Settings(database_url="sqlite:///:memory:")))


def head_revision() -> str | None:
    return _script().get_current_head()


def known_revisions() -> list[str]:
    """dbcore's revision ids, oldest first."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


def _database_heads(settings: Settings) -> tuple[str, ...]:
    engine = create_engine(settings, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()


def foreign_revisions(settings: Settings | None = None) -> list[str]:
    """Revisions the database records that dbcore's migrations do not hold, e.g. a downstream project's."""
    return _not_dbcore_s(_database_heads(settings or Settings.from_env()))


def _not_dbcore_s(revisions: tuple[str, ...]) -> list[str]:
    known = set(known_revisions())
    return [revision for revision in revisions if revision not in known]


def _refuse_foreign_history(settings: Settings) -> tuple[str, ...]:
    """The database's heads; a MigrationError when some are not dbcore's, before alembic acts on a history it half knows."""
    heads = _database_heads(settings)
    foreign = _not_dbcore_s(heads)
    if foreign:
        raise MigrationError(_foreign_message(settings, foreign))
    return heads


def current_revision(settings: Settings | None = None) -> str | None:
    heads = _refuse_foreign_history(settings or Settings.from_env())
    # dbcore's history is one line, so its revisions leave at most one head.
    return heads[0] if heads else None


def pending_revisions(settings: Settings | None = None) -> list[str]:
    """Revisions between the database's current one and head, oldest first."""
    settings = settings or Settings.from_env()
    current = current_revision(settings)
    revisions = [rev.revision for rev in _script().iterate_revisions("head", current)]
    return list(reversed(revisions))


def missing_tables(settings: Settings | None = None) -> list[str]:
    """dbcore's tables that the database lacks: all of them when it was never migrated."""
    engine = create_engine(settings or Settings.from_env(), poolclass=sa.pool.NullPool)
    try:
        present = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return sorted(set(Base.metadata.tables) - present)


@contextmanager
def _revision_errors(target: str) -> Iterator[None]:
    """Turn alembic's errors into a MigrationError that names the revision in trouble and dbcore's revisions."""
    try:
        yield
    except (CommandError, RevisionError) as exc:
        raise MigrationError(_target_message(target, exc)) from exc


def _foreign_message(settings: Settings, foreign: list[str]) -> str:
    names = ", ".join(repr(revision) for revision in foreign)
    return (
        f"the database at {settings.masked_url} records revision {names}, which dbcore's migrations do not hold "
        "(another project migrated it with dbcore's revisions and its own); run that project's alembic, whose "
        "version_locations list dbcore's versions and its own, e.g. `alembic upgrade heads` (docs/migrations.md)"
    )


def _target_message(target: str, exc: Exception) -> str:
    revisions = known_revisions()
    known = f"base, {', '.join(revisions)} (head)" if revisions else "base"
    cause = exc if isinstance(exc, RevisionError) else exc.__cause__
    if isinstance(cause, ResolutionError):
        return (
            f"no revision {cause.argument!r} in dbcore's migrations; give one of {known}, "
            "a step such as -1, or nothing for head"
        )
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(cause, RevisionError):
        return f"cannot migrate to {target!r}: {reason}; dbcore's revisions are {known}"
    return f"cannot migrate to {target!r}: {reason}"


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


# --- the alembic environment (``_migrations/env.py`` calls run_env) ----------------------------


def run_env() -> None:
    """Run the migrations alembic asked for, online or offline, on a dbcore engine.

    Called by ``env.py`` while alembic runs it, so ``alembic.context`` is live.
    """
    from alembic import context

    if context.is_offline_mode():
        _run_migrations_offline(context)
    else:
        _run_migrations_online(context)


def _env_settings(config: Config) -> Settings:
    given = config.attributes.get("dbcore_settings")
    return given if isinstance(given, Settings) else Settings.from_env()


def _env_options() -> dict[str, Any]:
    return {
        "target_metadata": Base.metadata,
        "include_object": include_object,
        "render_item": render_item,
        "compare_type": True,
        "compare_server_default": False,
        "user_module_prefix": "dbcore.types.",
    }


def _run_migrations_offline(context: Any) -> None:
    config = context.config
    url = config.attributes.get("dbcore_offline_url") or _env_settings(config).url
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **_env_options())
    dialect = context.get_context().dialect
    if dialect.name == "mssql" and not dialect.default_schema_name:
        # Column comments become sp_addextendedproperty calls, which name the schema.
        dialect.default_schema_name = "dbo"
    with context.begin_transaction():
        context.run_migrations()


def _run_migrations_online(context: Any) -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_on(context, connection)
        return
    engine = create_engine(_env_settings(context.config), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            _run_on(context, connection)
    finally:
        engine.dispose()


def _run_on(context: Any, connection: sa.Connection) -> None:
    # Migrations run on a dbcore engine and may seed system tables: they hold the credentials.
    previous = connection.get_execution_options().get(SYSTEM_EXECUTION_OPTION, False)
    connection.execution_options(**{SYSTEM_EXECUTION_OPTION: True})
    try:
        prepare_connection(connection)
        context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite", **_env_options())
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execution_options(**{SYSTEM_EXECUTION_OPTION: previous})
