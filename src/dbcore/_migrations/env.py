"""dbcore's alembic environment: the database from dbcore's settings, dbcore's types rendered importably."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.pool import NullPool

import dbcore.models  # noqa: F401  (registers every table on Base.metadata)
from dbcore.base import Base
from dbcore.config import Settings
from dbcore.engine import create_engine
from dbcore.migrate import include_object, prepare_connection, render_item
from dbcore.security import SYSTEM_EXECUTION_OPTION

config = context.config
target_metadata = Base.metadata


def _settings() -> Settings:
    given = config.attributes.get("dbcore_settings")
    return given if isinstance(given, Settings) else Settings.from_env()


def _options() -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "include_object": include_object,
        "render_item": render_item,
        "compare_type": True,
        "compare_server_default": False,
        "user_module_prefix": "dbcore.types.",
    }


def run_migrations_offline() -> None:
    url = config.attributes.get("dbcore_offline_url") or _settings().url
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **_options())
    dialect = context.get_context().dialect
    if dialect.name == "mssql" and not dialect.default_schema_name:
        # Column comments become sp_addextendedproperty calls, which name the schema.
        dialect.default_schema_name = "dbo"
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_settings(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection: Any) -> None:
    # Migrations run on a dbcore engine and may seed system tables: they hold the credentials.
    previous = connection.get_execution_options().get(SYSTEM_EXECUTION_OPTION, False)
    connection.execution_options(**{SYSTEM_EXECUTION_OPTION: True})
    try:
        prepare_connection(connection)
        context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite", **_options())
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execution_options(**{SYSTEM_EXECUTION_OPTION: previous})


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
