"""Alembic, driven from dbcore's settings: upgrade, downgrade, pending revisions and drift.

The migration scripts live in ``src/dbcore/_migrations`` (a data folder of the
package, not a module), so a regular and an editable install of dbcore both
have them: ``dbcore migrate`` and ``dbcore:_migrations:versions`` in a version_locations.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError, RevisionError
from alembic.util import CommandError
from sqlalchemy.orm import registry as Registry

import dbcore.models  # noqa: F401  (registers every table on Base.metadata)
from dbcore.base import Base
from dbcore.config import Settings
from dbcore.engine import create_engine
from dbcore.errors import MigrationError
from dbcore.plugins import registered_plugins
from dbcore.security import SYSTEM_EXECUTION_OPTION
from dbcore.types import GUID, PLAIN_DDL_TYPES, SqlEnum, UTCDateTime, Vector

__all__ = [
    "MigrationError",
    "migrations_dir",
    "alembic_config",
    "MODELS_OPTION",
    "project_registries",
    "model_registries",
    "project_metadata",
    "head_revisions",
    "current_heads",
    "SchemaState",
    "schema_state",
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


#: The ``[alembic]`` option of a project's alembic.ini naming the modules that hold its models.
MODELS_OPTION = "dbcore_models"

#: A project's alembic.ini (its path), or None for dbcore's own migrations alone.
IniPath = str | Path | None


def alembic_config(
    settings: Settings | None = None,
    *,
    connection: sa.Connection | None = None,
    ini: IniPath = None,
    with_plugins: bool = True,
) -> Config:
    """The alembic configuration of dbcore's migrations and the registered plugins', or of a project's ``ini`` file.

    Without ``ini``, every plugin registered under ``dbcore.plugins``
    (:mod:`dbcore.plugins`) adds its revision folder to ``version_locations`` and its
    model modules to ``dbcore_models``; ``with_plugins=False`` leaves dbcore's own.
    A project's alembic.ini lists dbcore's revisions and its own in
    ``version_locations`` (``dbcore:_migrations:versions``) and may name its model
    modules in ``dbcore_models``; see docs/migrations.md.
    """
    if ini is None:
        config = Config()
        config.set_main_option("script_location", str(migrations_dir()))
        config.set_main_option("path_separator", "os")
        plugins = registered_plugins() if with_plugins else ()
        if plugins:
            folders = [migrations_dir() / "versions", *(plugin.migrations for plugin in plugins)]
            config.set_main_option("version_locations", _escaped(os.pathsep.join(map(str, folders))))
            config.set_main_option(MODELS_OPTION, " ".join(name for plugin in plugins for name in plugin.models))
    else:
        path = Path(ini)
        if not path.is_file():
            raise MigrationError(f"no alembic configuration file at {str(path)!r}; give your project's alembic.ini")
        config = Config(str(path))
    config.attributes["dbcore_settings"] = settings or Settings.from_env()
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _escaped(value: str) -> str:
    """``value`` as an alembic option (configparser interpolates '%')."""
    return value.replace("%", "%%")


def project_registries(config: Config) -> list[Registry]:
    """The registries of the declarative bases in the modules ``dbcore_models`` names (dbcore's own left out).

    The modules are imported after alembic's ``prepend_sys_path`` was applied, so a
    project's ``myapp.models`` imports from the folder of its alembic.ini.
    """
    names = (config.get_main_option(MODELS_OPTION) or "").replace(",", " ").split()
    if not names:
        return []
    ScriptDirectory.from_config(config)  # applies prepend_sys_path
    found: list[Registry] = []
    where = f"{MODELS_OPTION} in {config.config_file_name}" if config.config_file_name else "a dbcore plugin"
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's module is reported in one line
            raise MigrationError(
                f"{where} names {name!r}, which cannot be imported: {type(exc).__name__}: {exc}"
            ) from exc
        for value in vars(module).values():
            registry = getattr(value, "registry", None) if isinstance(value, type) else None
            if isinstance(registry, Registry) and registry is not Base.registry and registry not in found:
                found.append(registry)
        if not found:
            raise MigrationError(
                f"{where} names {name!r}, which holds no declarative base or model class (dbcore.make_base())"
            )
    return found


def project_metadata(ini: IniPath = None) -> list[sa.MetaData]:
    """dbcore's metadata, then that of the project's models (``dbcore_models`` of ``ini``) or the plugins'."""
    return [registry.metadata for registry in model_registries(ini=ini)]


def model_registries(settings: Settings | None = None, ini: IniPath = None) -> list[Registry]:
    """dbcore's registry, then the project's (``dbcore_models`` of ``ini``) or, without ``ini``, the plugins'."""
    config = alembic_config(settings or Settings(database_url="sqlite:///:memory:"), ini=ini)
    return [Base.registry, *project_registries(config)]


def upgrade(
    settings: Settings | None = None, revision: str | None = None, *, sql: bool = False, ini: IniPath = None
) -> None:
    """Upgrade to ``revision``: by default every head (``heads``): dbcore's, and each plugin's or the project's."""
    settings = settings or Settings.from_env()
    revision = revision or "heads"
    _check_plugin_branches(ini)
    if not sql:
        _refuse_foreign_history(settings, ini)
    with _revision_errors(revision, ini):
        command.upgrade(alembic_config(settings, ini=ini), revision, sql=sql)


def downgrade(settings: Settings | None = None, revision: str = "base", *, ini: IniPath = None) -> None:
    settings = settings or Settings.from_env()
    _refuse_foreign_history(settings, ini)
    with _revision_errors(revision, ini):
        command.downgrade(alembic_config(settings, ini=ini), revision)


def _script(ini: IniPath = None, *, with_plugins: bool = True) -> ScriptDirectory:
    config = alembic_config(Settings(database_url="sqlite:///:memory:"), ini=ini, with_plugins=with_plugins)
    return ScriptDirectory.from_config(config)


def _check_plugin_branches(ini: IniPath) -> None:
    """Each plugin's history must start on its own branch, so ``heads`` upgrades it beside dbcore's."""
    plugins = registered_plugins() if ini is None else ()
    if not plugins:
        return
    for script in _script().walk_revisions():
        folder = Path(script.path).resolve().parent
        owner = next((plugin for plugin in plugins if plugin.migrations == folder), None)
        if owner is not None and script.down_revision is None and owner.name not in script.branch_labels:
            raise MigrationError(
                f"the dbcore plugin {owner.name!r}: revision {script.revision} ({Path(script.path).name}) starts "
                f"its history without branch_labels = ({owner.name!r},); add it, with depends_on naming the "
                "dbcore revision the plugin's tables build on"
            )


def head_revision() -> str | None:
    """The head of dbcore's own migrations."""
    return _script(with_plugins=False).get_current_head()


def head_revisions(ini: IniPath = None) -> tuple[str, ...]:
    """Every head: dbcore's and each registered plugin's, or dbcore's and a project's branch with ``ini``."""
    return tuple(_script(ini).get_heads())


def known_revisions(ini: IniPath = None, *, with_plugins: bool = True) -> list[str]:
    """The revision ids of dbcore's migrations and the plugins' (with ``ini``: the project's history), oldest first."""
    script = _script(ini, with_plugins=with_plugins)
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def _database_heads(settings: Settings) -> tuple[str, ...]:
    engine = create_engine(settings, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()


def foreign_revisions(settings: Settings | None = None, ini: IniPath = None) -> list[str]:
    """Revisions the database records that the migrations do not hold, e.g. a downstream project's."""
    return _unknown(_database_heads(settings or Settings.from_env()), ini)


def _unknown(revisions: tuple[str, ...], ini: IniPath) -> list[str]:
    known = set(known_revisions(ini))
    return [revision for revision in revisions if revision not in known]


def _refuse_foreign_history(settings: Settings, ini: IniPath = None) -> tuple[str, ...]:
    """The database's heads; a MigrationError when some are unknown, before alembic acts on a history it half knows."""
    heads = _database_heads(settings)
    foreign = _unknown(heads, ini)
    if foreign:
        raise MigrationError(_foreign_message(settings, foreign, ini))
    return heads


def current_revision(settings: Settings | None = None) -> str | None:
    heads = _refuse_foreign_history(settings or Settings.from_env())
    # dbcore's history is one line, so its revisions leave at most one head.
    return heads[0] if heads else None


def current_heads(settings: Settings | None = None, ini: IniPath = None) -> tuple[str, ...]:
    """The revisions the database is at: one for dbcore alone, one per branch for a project (``ini``)."""
    return _refuse_foreign_history(settings or Settings.from_env(), ini)


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands in a migration history, from one read of its ``alembic_version``.

    alembic_version keeps only heads: a project revision that depends on dbcore's
    0002 stands for 0002 too, so ``applied`` holds the heads and all they build on,
    dependencies included.
    """

    heads: tuple[str, ...]
    applied: frozenset[str]
    pending: tuple[str, ...]  # oldest first
    dbcore_at: str | None  # the newest of dbcore's own revisions applied


def schema_state(settings: Settings | None = None, ini: IniPath = None) -> SchemaState:
    heads = current_heads(settings or Settings.from_env(), ini)
    script = _script(ini)
    applied = frozenset(rev.revision for head in heads for rev in script.iterate_revisions(head, "base"))
    mine = [revision for revision in known_revisions(with_plugins=False) if revision in applied]
    pending = tuple(revision for revision in known_revisions(ini) if revision not in applied)
    return SchemaState(heads, applied, pending, mine[-1] if mine else None)


def pending_revisions(settings: Settings | None = None, ini: IniPath = None) -> list[str]:
    """Revisions between the database's current ones and the heads, oldest first."""
    return list(schema_state(settings, ini).pending)


def missing_tables(settings: Settings | None = None, ini: IniPath = None) -> list[str]:
    """Tables of the models (dbcore's, and the project's with ``ini``) that the database lacks."""
    wanted = {name for metadata in project_metadata(ini) for name in metadata.tables}
    engine = create_engine(settings or Settings.from_env(), poolclass=sa.pool.NullPool)
    try:
        present = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return sorted(wanted - present)


@contextmanager
def _revision_errors(target: str, ini: IniPath = None) -> Iterator[None]:
    """Turn alembic's errors into a MigrationError that names the revision in trouble and the known revisions."""
    try:
        yield
    except (CommandError, RevisionError) as exc:
        raise MigrationError(_target_message(target, exc, ini)) from exc


def _foreign_message(settings: Settings, foreign: list[str], ini: IniPath) -> str:
    names = ", ".join(repr(revision) for revision in foreign)
    if ini is not None:
        return f"the database at {settings.masked_url} records revision {names}, which {str(ini)!r} does not hold"
    return (
        f"the database at {settings.masked_url} records revision {names}, which neither dbcore's migrations nor "
        "an installed dbcore plugin hold (a plugin that was uninstalled, or another project that migrated it with "
        "dbcore's revisions and its own); reinstall the plugin, or give that project's alembic.ini, "
        "e.g. `dbcore migrate --alembic-ini alembic.ini`, or run its alembic, e.g. `alembic upgrade heads` "
        "(docs/migrations.md)"
    )


def _target_message(target: str, exc: Exception, ini: IniPath = None) -> str:
    revisions = known_revisions(ini)
    whose = "dbcore's migrations" if ini is None else repr(str(ini))
    heads = set(head_revisions(ini))
    listed = ", ".join(f"{rev} (head)" if rev in heads else rev for rev in revisions)
    known = f"base, {listed}" if revisions else "base"
    cause = exc if isinstance(exc, RevisionError) else exc.__cause__
    if isinstance(cause, ResolutionError):
        return f"no revision {cause.argument!r} in {whose}; give one of {known}, a step such as -1, or nothing for head"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(cause, RevisionError):
        return f"cannot migrate to {target!r}: {reason}; the revisions of {whose} are {known}"
    return f"cannot migrate to {target!r}: {reason}"


def schema_drift(settings: Settings | None = None, ini: IniPath = None) -> list[Any]:
    """Differences between the migrated database and the models (empty when they agree), as ``alembic check`` sees them."""

    engine = create_engine(settings or Settings.from_env(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_object": include_object, "compare_type": True, "compare_server_default": False},
            )
            metadata = project_metadata(ini)
            return list(compare_metadata(context, metadata if len(metadata) > 1 else metadata[0]))  # type: ignore[arg-type]
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


def run_env(*metadata: sa.MetaData) -> None:
    """Run the migrations alembic asked for, online or offline, on a dbcore engine.

    Called by ``env.py`` while alembic runs it, so ``alembic.context`` is live. The
    models compared by autogenerate are dbcore's, those of the modules the ini's
    ``dbcore_models`` names, and any ``metadata`` given (a project's own ``env.py``
    may call ``run_env(MyBase.metadata)`` instead of naming its modules in the ini).
    """
    target = [Base.metadata]
    for extra in [*metadata, *(registry.metadata for registry in project_registries(context.config))]:
        if extra not in target:
            target.append(extra)
    options = _env_options(target)
    if context.is_offline_mode():
        _run_migrations_offline(context, options)
    else:
        _run_migrations_online(context, options)


def _env_settings(config: Config) -> Settings:
    given = config.attributes.get("dbcore_settings")
    return given if isinstance(given, Settings) else Settings.from_env()


def _env_options(target: list[sa.MetaData]) -> dict[str, Any]:
    return {
        "target_metadata": target if len(target) > 1 else target[0],
        "include_object": include_object,
        "render_item": render_item,
        "compare_type": True,
        "compare_server_default": False,
        "user_module_prefix": "dbcore.types.",
    }


def _run_migrations_offline(context: Any, options: dict[str, Any]) -> None:
    config = context.config
    url = config.attributes.get("dbcore_offline_url") or _env_settings(config).url
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **options)
    dialect = context.get_context().dialect
    if dialect.name == "mssql" and not dialect.default_schema_name:
        # Column comments become sp_addextendedproperty calls, which name the schema.
        dialect.default_schema_name = "dbo"
    with context.begin_transaction():
        context.run_migrations()


def _run_migrations_online(context: Any, options: dict[str, Any]) -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_on(context, connection, options)
        return
    engine = create_engine(_env_settings(context.config), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            _run_on(context, connection, options)
    finally:
        engine.dispose()


def _run_on(context: Any, connection: sa.Connection, options: dict[str, Any]) -> None:
    # Migrations run on a dbcore engine and may seed system tables: they hold the credentials.
    previous = connection.get_execution_options().get(SYSTEM_EXECUTION_OPTION, False)
    connection.execution_options(**{SYSTEM_EXECUTION_OPTION: True})
    try:
        prepare_connection(connection)
        context.configure(
            connection=connection,
            render_as_batch=connection.dialect.name == "sqlite",
            **options,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execution_options(**{SYSTEM_EXECUTION_OPTION: previous})
