"""is_connected(), connection_error() and connection_info() against real servers that go away and come back.

Every check runs both ways (the ``api`` fixture): the sync functions on ``get_engine``,
and ``is_connected_async`` / ``connection_error_async`` / ``connection_info_async`` on
the async engine of the test's event loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

import dbcore
from dbcore.testing import EmbeddedPostgres, TestServers
from tests.api_modes import Api
from tests.conftest import server_url
from tests.tcp_proxy import TcpProxy

SECRET = "hunter2-secret"


def test_connection_info_reports_pool_and_server(api: Api, settings: dbcore.Settings, dialect: str) -> None:
    info = api.connection_info(settings)
    assert info.connected is True
    assert info.error is None
    assert info.driver == (settings.async_url if api.is_async else settings.url).get_driver_name()
    assert info.server_version
    assert dialect.startswith(info.dialect)
    if info.dialect != "sqlite":
        assert info.pool_size == 40
        assert info.checked_out == 0
        assert info.checked_in is not None and info.checked_in >= 1
        assert info.overflow is not None
    with api.session(settings) as steps:
        steps(lambda session: session.execute(sa.text("SELECT 1")))
        during = api.connection_info(settings)
        if info.dialect != "sqlite":
            assert during.checked_out == 1
    assert set(info.as_dict()) >= {
        "dialect",
        "driver",
        "url",
        "server_version",
        "pool_size",
        "checked_out",
        "overflow",
        "checked_in",
    }


def one_clear_line(error: str | None, kind: str = "ConnectionFailed") -> str:
    """A connection error as health reports it: one line, naming the typed error, no secret."""
    assert error is not None
    assert "\n" not in error
    assert error.startswith(f"{kind} on "), error
    assert SECRET not in error
    return error


def test_connection_info_masks_password(api: Api) -> None:
    settings = dbcore.Settings(database_url=f"postgresql+psycopg://agent:{SECRET}@127.0.0.1:1/none", connect_timeout=1)
    info = api.connection_info(settings)
    assert info.connected is False
    assert SECRET not in repr(info)
    assert "***" in info.url
    one_clear_line(info.error)


def test_is_connected_false_for_unreachable_server(api: Api) -> None:
    settings = dbcore.Settings(database_url=f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/none", connect_timeout=1)
    assert api.is_connected(settings) is False
    one_clear_line(api.connection_error(settings))


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


def _outage_and_recovery(api: Api, settings: dbcore.Settings, stop: object, start: object) -> None:
    engine = api.engine(settings)
    assert api.is_connected(settings)
    assert api.connection_error(settings) is None
    stop()  # type: ignore[operator]
    assert api.is_connected(settings) is False
    one_clear_line(api.connection_error(settings))
    info = api.connection_info(settings)
    assert info.connected is False
    one_clear_line(info.error)
    start()  # type: ignore[operator]
    assert api.is_connected(settings) is True
    assert api.engine(settings) is engine, "the same engine recovers; nothing was recreated"


def test_is_connected_follows_server_outage_through_proxy(api: Api, proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    settings = dbcore.Settings(database_url=url.render_as_string(hide_password=False), connect_timeout=2)
    _outage_and_recovery(api, settings, proxy.stop, proxy.start)


@pytest.mark.postgresql
def test_is_connected_follows_real_postgres_stop_and_restart(api: Api) -> None:
    server = EmbeddedPostgres()
    try:
        settings = dbcore.Settings(database_url=server.url.render_as_string(hide_password=False), connect_timeout=2)
        _outage_and_recovery(api, settings, server.stop, server.start)
    finally:
        api.dispose_engines()
        server.cleanup()


@pytest.mark.postgresql
def test_connection_info_says_why_a_missing_database_is_not_connected(api: Api, servers: TestServers) -> None:
    url = server_url(servers, "postgresql").set(database="nosuchdb16", password=SECRET)
    settings = dbcore.Settings(database_url=url.render_as_string(hide_password=False))
    info = api.connection_info(settings)
    assert info.connected is False
    assert 'database "nosuchdb16" does not exist' in one_clear_line(info.error, "DatabaseNotFound")
    assert SECRET not in repr(info)
    assert one_clear_line(api.connection_error(settings), "DatabaseNotFound") == info.error
