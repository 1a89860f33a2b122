"""is_connected() and connection_info() against real servers that go away and come back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

import dbcore
from dbcore.testing import EmbeddedPostgres, TestServers
from tests.conftest import server_url
from tests.tcp_proxy import TcpProxy

SECRET = "hunter2-secret"


def test_connection_info_reports_pool_and_server(settings: dbcore.Settings, dialect: str) -> None:
    info = dbcore.connection_info(settings)
    assert info.connected is True
    assert info.server_version
    assert dialect.startswith(info.dialect)
    if info.dialect != "sqlite":
        assert info.pool_size == 40
        assert info.checked_out == 0
        assert info.checked_in is not None and info.checked_in >= 1
        assert info.overflow is not None
    with dbcore.get_session(settings) as session:
        session.execute(sa.text("SELECT 1"))
        during = dbcore.connection_info(settings)
        if info.dialect != "sqlite":
            assert during.checked_out == 1
    assert set(info.as_dict()) >= {"dialect", "driver", "url", "server_version", "pool_size", "checked_out", "overflow", "checked_in"}


def test_connection_info_masks_password() -> None:
    settings = dbcore.Settings(database_url=f"postgresql+psycopg://agent:{SECRET}@127.0.0.1:1/none", connect_timeout=1)
    info = dbcore.connection_info(settings)
    assert info.connected is False
    assert SECRET not in repr(info)
    assert "***" in info.url


def test_is_connected_false_for_unreachable_server() -> None:
    assert dbcore.is_connected(dbcore.Settings(database_url="mysql+pymysql://root@127.0.0.1:1/none", connect_timeout=1)) is False


# Servers shared with other tests are cut off through a proxy; the embedded PostgreSQL is
# really stopped (below); SQLite has no server to lose.
@pytest.fixture(
    params=[
        pytest.param("postgresql_novector", marks=pytest.mark.postgresql, id="postgresql_novector"),
        pytest.param("mariadb", marks=pytest.mark.mariadb, id="mariadb"),
        pytest.param("mssql", marks=pytest.mark.mssql, id="mssql"),
    ]
)
def proxied(request: pytest.FixtureRequest, servers: TestServers) -> Iterator[tuple[TcpProxy, URL]]:
    dialect = request.param
    upstream = server_url(servers, dialect)
    proxy = TcpProxy(upstream.host or "127.0.0.1", upstream.port or {"mariadb": 3306, "mssql": 1433}.get(dialect, 5432))
    proxy.start()
    yield proxy, upstream.set(host="127.0.0.1", port=proxy.port)
    proxy.stop()


def _outage_and_recovery(settings: dbcore.Settings, stop: object, start: object) -> None:
    engine = dbcore.get_engine(settings)
    assert dbcore.is_connected(settings)
    stop()  # type: ignore[operator]
    assert dbcore.is_connected(settings) is False
    assert dbcore.connection_info(settings).connected is False
    start()  # type: ignore[operator]
    assert dbcore.is_connected(settings) is True
    assert dbcore.get_engine(settings) is engine, "the same engine recovers; nothing was recreated"


def test_is_connected_follows_server_outage_through_proxy(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    settings = dbcore.Settings(database_url=url.render_as_string(hide_password=False), connect_timeout=2)
    _outage_and_recovery(settings, proxy.stop, proxy.start)


@pytest.mark.postgresql
def test_is_connected_follows_real_postgres_stop_and_restart() -> None:
    server = EmbeddedPostgres()
    try:
        settings = dbcore.Settings(database_url=server.url.render_as_string(hide_password=False), connect_timeout=2)
        _outage_and_recovery(settings, server.stop, server.start)
    finally:
        dbcore.dispose_engines()
        server.cleanup()


@pytest.mark.postgresql
def test_connection_info_says_why_a_missing_database_is_not_connected(servers: TestServers) -> None:
    url = server_url(servers, "postgresql").set(database="nosuchdb16", password=SECRET)
    info = dbcore.connection_info(dbcore.Settings(database_url=url.render_as_string(hide_password=False)))
    assert info.connected is False
    assert info.error is not None and 'database "nosuchdb16" does not exist' in info.error
    assert "DatabaseNotFound" in info.error
    assert SECRET not in repr(info)
