"""dbcore's alembic migrations: upgrade, downgrade, drift, pgvector, the CLI, autogenerate, offline SQL."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa
from alembic import command

import dbcore
import dbcore.models  # noqa: F401
from dbcore import migrate
from tests.schema import table_names

REPO = Path(__file__).resolve().parent.parent
DBCORE_TABLES = set(dbcore.Base.metadata.tables)


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_upgrade_downgrade_upgrade_without_drift(settings: dbcore.Settings) -> None:
    migrate.upgrade(settings, "head")
    assert DBCORE_TABLES <= table_names(settings)
    assert migrate.schema_drift(settings) == []

    migrate.downgrade(settings, "base")
    assert not (DBCORE_TABLES & table_names(settings))
    assert migrate.current_revision(settings) is None
    assert migrate.pending_revisions(settings) == ["0001", "0002", "0003"] and migrate.head_revision() == "0003"

    migrate.upgrade(settings, "head")
    assert migrate.schema_drift(settings) == []
    assert migrate.pending_revisions(settings) == []
    assert migrate.current_revision(settings) == migrate.head_revision() == "0003"


@pytest.mark.parametrize(
    "dialect",
    [pytest.param(name, marks=pytest.mark.postgresql, id=name) for name in ("postgresql", "postgresql_novector")],
)
def test_vector_storage_follows_pgvector(settings: dbcore.Settings, dialect: str) -> None:
    migrate.upgrade(settings, "head")
    engine = dbcore.create_engine(settings, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            udt = connection.execute(
                sa.text(
                    "SELECT udt_name FROM information_schema.columns "
                    "WHERE table_name = 'memory_embeddings' AND column_name = 'embedding'"
                )
            ).scalar_one()
            indexes = dict(
                connection.execute(
                    sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memory_embeddings'")
                ).all()
            )
    finally:
        engine.dispose()
    if dialect == "postgresql":
        assert udt == "vector"
        indexdef = indexes[migrate.HNSW_INDEX]
        assert "USING hnsw" in indexdef and "vector_cosine_ops" in indexdef
    else:
        assert udt == "bytea"
        assert migrate.HNSW_INDEX not in indexes
        assert not any("hnsw" in definition for definition in indexes.values())


def test_plain_alembic_upgrade_in_the_repository(settings: dbcore.Settings) -> None:
    alembic = Path(sys.executable).parent / "alembic"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "POSTGRES_URL")}
    env["DATABASE_URL"] = settings.url.render_as_string(hide_password=False)
    result = subprocess.run(
        [str(alembic), "-c", str(REPO / "alembic.ini"), "upgrade", "head"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert migrate.current_revision(settings) == migrate.head_revision()
    assert migrate.schema_drift(settings) == []


def test_the_initial_revision_imports_cleanly() -> None:
    module = load_module(
        REPO / "src" / "dbcore" / "_migrations" / "versions" / "0001_initial_schema.py", "dbcore_rev_0001"
    )
    assert module.revision == "0001"
    assert module.down_revision is None
    assert callable(module.upgrade) and callable(module.downgrade)


@pytest.mark.sqlite
def test_autogenerate_renders_dbcore_types_importably(tmp_path: Path) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.migrations_dir(), scripts, ignore=shutil.ignore_patterns("__pycache__"))
    for old in (scripts / "versions").glob("*.py"):
        old.unlink()
    settings = dbcore.Settings(database_url=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    config = migrate.alembic_config(settings)
    config.set_main_option("script_location", str(scripts))

    command.revision(config, message="everything", autogenerate=True, rev_id="auto1")

    generated = list((scripts / "versions").glob("auto1_*.py"))
    assert len(generated) == 1
    text = generated[0].read_text(encoding="utf-8")
    for rendered in (
        "dbcore.types.GUID()",
        "dbcore.types.Vector(",
        "dbcore.types.SqlEnum(",
        "dbcore.types.UTCDateTime()",
    ):
        assert rendered in text
    assert f"dbcore.types.Vector({dbcore.DB_Memories.EMBEDDING_DIMS})" in text
    module = load_module(generated[0], "dbcore_rev_auto1")
    assert module.revision == "auto1"
    assert len(re.findall(r"op\.create_table\(", text)) == len(DBCORE_TABLES)


MSSQL_URL = "mssql+pyodbc://sa@h/db?driver=ODBC+Driver+18+for+SQL+Server"


def offline_sql(url: str) -> str:
    config = migrate.alembic_config(dbcore.Settings(database_url="sqlite:///:memory:"))
    config.attributes["dbcore_offline_url"] = url
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    return config.output_buffer.getvalue()


@pytest.mark.compile_only
def test_mssql_offline_sql() -> None:
    sql = offline_sql(MSSQL_URL)
    created = set(re.findall(r"CREATE TABLE (\w+)", sql))
    assert created >= DBCORE_TABLES
    assert len(DBCORE_TABLES) == 21
    assert len(re.findall(r"CREATE TABLE (\w+)", sql)) == 21 + 1  # and alembic_version
    for fragment in (
        "UNIQUEIDENTIFIER",
        "TINYINT",
        "VARBINARY(max)",
        "DATETIME2",
        "NVARCHAR",
        "sp_addextendedproperty",
        "ALTER TABLE users ADD CONSTRAINT fk_users_entity_id_entities",
    ):
        assert fragment in sql, fragment
    assert "hnsw" not in sql


@pytest.mark.compile_only
@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://u@h/db", "mysql+pymysql://u@h/db"], ids=["postgresql", "mariadb"]
)
def test_offline_sql_renders_for_other_servers(url: str) -> None:
    sql = offline_sql(url)
    assert DBCORE_TABLES <= set(re.findall(r"CREATE TABLE (\w+)", sql))
    assert "ALTER TABLE users ADD CONSTRAINT fk_users_entity_id_entities" in sql
