"""The adapter's lifecycle: init, health, dimension checks, transactions and agent views, sync and async."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

import dbcore
from dbcore.DB_Memories import EMBEDDING_DIMS
from tests.api_modes import AdapterView


def test_init_is_idempotent_and_records_the_vector_space(adapter: AdapterView) -> None:
    report = adapter.init()
    from dbcore import migrate

    assert set(report.revisions) == set(migrate.head_revisions())
    assert report.seeded_rows == 0  # the shared database was initialised already
    assert f"{EMBEDDING_DIMS} dims" in report.vector_space


def test_health(adapter: AdapterView) -> None:
    assert adapter.is_connected() is True
    info = adapter.connection_info()
    assert info.connected and info.error is None and info.server_version


def test_a_busy_pool_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from dbcore.adapter.lifecycle import warn_when_busy
    from dbcore.health import ConnectionInfo

    busy = ConnectionInfo("sqlite", "pysqlite", "u", True, "3", "QueuePool", 10, 9, 0, 1)
    with caplog.at_level(logging.WARNING, logger="dbcore.adapter"):
        warn_when_busy(busy)
        warn_when_busy(ConnectionInfo("sqlite", "pysqlite", "u", True, "3", "QueuePool", 10, 8, 0, 2))
    assert [r.getMessage() for r in caplog.records] == [
        "9 of 10 pooled connections are checked out (over 80%); raise DBCORE_POOL_SIZE or release sessions sooner"
    ]


def test_ensure_embedding_dimension(adapter: AdapterView) -> None:
    adapter.ensure_embedding_dimension(EMBEDDING_DIMS)
    with pytest.raises(dbcore.DimensionMismatchError, match=r"has 384 dims but 1536 were asked for.*re-embed"):
        adapter.ensure_embedding_dimension(1536)
    with pytest.raises(dbcore.ValidationError, match="dims='384'"):
        adapter.ensure_embedding_dimension("384")


def test_transaction_nests_and_rolls_back(adapter: AdapterView) -> None:
    engine = dbcore.get_engine(adapter.settings)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(dbcore.VectorSpace)) or 0)

    before = count()
    with pytest.raises(RuntimeError):
        with adapter.transaction():
            adapter.ensure_embedding_dimension(EMBEDDING_DIMS)
            with adapter.transaction():
                adapter.ensure_embedding_dimension(EMBEDDING_DIMS)
            raise RuntimeError("boom")
    assert count() == before


def test_bad_construction() -> None:
    with pytest.raises(dbcore.ConfigurationError, match="Settings, a database URL or nothing"):
        dbcore.DatabaseAdapter(42)  # type: ignore[arg-type]
    with pytest.raises(dbcore.ValidationError, match="duplicate_threshold=1.5"):
        dbcore.DatabaseAdapter("sqlite://", duplicate_threshold=1.5)
    with pytest.raises(dbcore.ValidationError, match="agent_id='nope' is not a UUID"):
        dbcore.DatabaseAdapter("sqlite://").for_agent("nope")


def test_views_share_the_adapters_store_and_close_leaves_a_given_store_open(tmp_path: object) -> None:
    settings = dbcore.Settings(database_url="sqlite://")
    adapter = dbcore.DatabaseAdapter(settings)
    view = adapter.for_agent("6f1e0a4e-1111-4111-8111-111111111111")
    assert view.vector_store() is adapter.vector_store()
    given = dbcore.get_vector_store(settings)
    owned = dbcore.DatabaseAdapter(settings, vector_store=given)
    owned.close()
    assert owned.vector_store() is given  # the caller's store: not closed, not forgotten
    given.close()
    adapter.close()
