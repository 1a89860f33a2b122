"""Alembic environment of a downstream project whose migrations build on dbcore's.

The recipe
----------

1. Models go on their own base, ``DownstreamBase = dbcore.make_base("DownstreamBase")``
   (dbcore's naming convention and types, its own ``MetaData``). Keys to dbcore
   tables name the column object, ``sa.ForeignKey(dbcore.Agent.id)``, and
   relationships name the class, ``relationship(dbcore.Agent, backref="notes")``.

2. One history, one ``alembic_version`` table: this env reads the revisions from
   BOTH dbcore's scripts and the project's own (``version_locations`` below), so
   ``alembic upgrade heads`` applies dbcore's tables first, then the project's.

3. The project's revisions form their own branch. The first one has
   ``down_revision = None``, ``branch_labels = ("downstream",)`` and
   ``depends_on = "0001"`` (dbcore's initial schema; name dbcore's latest
   revision the project needs). Later ones chain on it as usual; make them with
   ``alembic revision --autogenerate --head downstream@head -m "..."``.
   dbcore's history and the project's stay two heads, so a new dbcore release
   needs no merge revision: upgrade with ``heads`` (plural), downgrade with
   ``base``.

4. ``target_metadata`` is the list ``[dbcore.Base.metadata, DownstreamBase.metadata]``;
   ``include_object``, ``render_item``, ``prepare_connection`` (creates pgvector
   on PostgreSQL, which dbcore's 0001 relies on) and ``render_as_batch`` on
   SQLite are dbcore's, as in dbcore's own env.

The database URL comes from dbcore's settings (``DATABASE_URL``, ``POSTGRES_URL``,
else the SQLite default), or from ``config.attributes["dbcore_settings"]`` when
alembic is driven from Python.

Because ``alembic_version`` then also holds the project's revision, dbcore's own
command (``dbcore migrate``/``doctor``/``init``) no longer knows every row of it:
migrate such a database with this env only.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.pool import NullPool
from tests.downstream_example.models import DownstreamBase

import dbcore.models  # noqa: F401  (registers dbcore's tables on dbcore.Base.metadata)
from dbcore.base import Base
from dbcore.config import Settings
from dbcore.engine import create_engine
from dbcore.migrate import include_object, prepare_connection, render_item

config = context.config
target_metadata = [Base.metadata, DownstreamBase.metadata]


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
    context.configure(url=_settings().url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **_options())
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
    prepare_connection(connection)
    context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite", **_options())
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
