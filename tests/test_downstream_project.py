"""A downstream project migrates dbcore's tables and its own through one alembic environment.

The example lives in ``tests/downstream_example`` (recipe in its ``migrations/env.py``).
Its models sit on their own base, so importing them leaves ``dbcore.Base.metadata`` alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session

import dbcore
from dbcore import migrate
from tests.downstream_example.models import DownstreamBase, Note
from tests.schema import table_names

EXAMPLE = Path(__file__).parent / "downstream_example"
INI = EXAMPLE / "alembic.ini"


def downstream_config(settings: dbcore.Settings) -> Config:
    config = Config(str(INI))
    config.attributes["dbcore_settings"] = settings
    return config


def drift(settings: dbcore.Settings) -> list[object]:
    engine = dbcore.create_engine(settings, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_object": migrate.include_object, "compare_type": True, "compare_server_default": False},
            )
            return list(compare_metadata(context, [dbcore.Base.metadata, DownstreamBase.metadata]))
    finally:
        engine.dispose()


def test_the_example_keeps_dbcore_metadata_clean() -> None:
    assert "notes" not in dbcore.Base.metadata.tables
    assert set(DownstreamBase.metadata.tables) == {"notes"}
    assert dbcore.check_models(DownstreamBase.metadata) == []


def test_history_holds_dbcore_and_downstream_heads() -> None:
    script = ScriptDirectory.from_config(Config(str(INI)))
    assert set(script.get_heads()) == {migrate.head_revision(), "ds0001"}
    first = script.get_revision("ds0001")
    assert first.down_revision is None
    assert first.dependencies == "0001"
    assert script.get_revision("downstream@head").revision == "ds0001"
    # The ini names dbcore's scripts by path; it must be the folder dbcore itself migrates from.
    locations = {Path(p).resolve() for p in script.version_locations}
    assert (migrate.migrations_dir() / "versions").resolve() in locations


def test_upgrade_use_downgrade(settings: dbcore.Settings) -> None:
    config = downstream_config(settings)
    command.upgrade(config, "heads")

    tables = table_names(settings)
    assert set(dbcore.Base.metadata.tables) <= tables
    assert "notes" in tables
    assert drift(settings) == []

    with dbcore.get_session(settings) as session:
        agent = dbcore.Agent(name="Scribe")
        session.add(Note(title="first", body="héllo 📝", agent=agent))
    with Session(dbcore.create_engine(settings)) as session:
        agent = session.execute(sa.select(dbcore.Agent).where(dbcore.Agent.name == "Scribe")).scalar_one()
        assert [(note.title, note.body) for note in agent.notes] == [("first", "héllo 📝")]  # type: ignore[attr-defined]
        assert agent.notes[0].agent is agent  # type: ignore[attr-defined]

    command.downgrade(config, "base")
    assert table_names(settings) <= {"alembic_version"}


@pytest.mark.sqlite
def test_plain_alembic_command_line(tmp_path: Path) -> None:
    alembic = Path(sys.executable).parent / "alembic"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "POSTGRES_URL")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'downstream.sqlite3'}"
    result = subprocess.run(
        [str(alembic), "-c", str(INI), "upgrade", "heads"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    settings = dbcore.Settings(database_url=env["DATABASE_URL"])
    assert {"notes", "agents", "alembic_version"} <= table_names(settings)
    assert drift(settings) == []
