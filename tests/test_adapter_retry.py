"""Transient faults and the adapter: each call outside ``transaction()`` is retried whole; inside, never.

The embedded PostgreSQL is stopped and restarted for real (tests/test_retry.py does the
same for ``run_in_transaction``), so the fault is what a client sees in production.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import dbcore
from dbcore.DB_Memories import EMBEDDING_DIMS
from dbcore.testing import EmbeddedPostgres
from tests.api_modes import MODES, AdapterView, LoopRunner

pytestmark = pytest.mark.postgresql


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres()
    settings = dbcore.Settings(database_url=pg.url.render_as_string(hide_password=False), retry_max_seconds=20)
    dbcore.DatabaseAdapter(settings).init()
    dbcore.dispose_engines()
    yield pg
    dbcore.dispose_engines()
    pg.cleanup()


@pytest.fixture(params=MODES)
def adapter(request: pytest.FixtureRequest, server: EmbeddedPostgres) -> Iterator[AdapterView]:
    settings = dbcore.Settings(database_url=server.url.render_as_string(hide_password=False), retry_max_seconds=20)
    if request.param == "sync":
        yield AdapterView(dbcore.DatabaseAdapter(settings), None)
        return
    loop: LoopRunner = request.getfixturevalue("aio")
    yield AdapterView(dbcore.AsyncDatabaseAdapter(settings), loop)


def test_a_call_outside_a_transaction_outlasts_a_restart(
    adapter: AdapterView, server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    adapter.ensure_embedding_dimension(EMBEDDING_DIMS)  # the pool now holds a connection the restart breaks
    server.stop()
    restart = threading.Timer(1.0, server.start)
    restart.start()
    try:
        adapter.ensure_embedding_dimension(EMBEDDING_DIMS)
    finally:
        restart.join()
    retries = [r for r in caplog.records if "retrying the unit of work" in r.getMessage()]
    assert retries, "the call was attempted again after the fault"


def test_a_call_inside_a_transaction_is_not_retried(
    adapter: AdapterView, server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    adapter.ensure_embedding_dimension(EMBEDDING_DIMS)
    started = time.monotonic()
    with pytest.raises(dbcore.ConnectionFailed):
        with adapter.transaction():
            adapter.ensure_embedding_dimension(EMBEDDING_DIMS)
            server.stop()
            try:
                adapter.ensure_embedding_dimension(EMBEDDING_DIMS)
            finally:
                server.start()
    assert time.monotonic() - started < 10
    assert not [r for r in caplog.records if "retrying" in r.getMessage()], "nothing inside transaction() is retried"
    adapter.ensure_embedding_dimension(EMBEDDING_DIMS)  # and the adapter works again afterwards
