"""Connection health: a real round trip, and what the pool is doing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from dbcore.config import Settings, mask_url
from dbcore.engine import get_async_engine, get_engine
from dbcore.errors import DatabaseError, DbcoreError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "is_connected",
    "connection_error",
    "connection_info",
    "ConnectionInfo",
    "is_connected_async",
    "connection_error_async",
    "connection_info_async",
]


@dataclass(frozen=True)
class ConnectionInfo:
    """What ``connection_info()`` reports. Pool figures are None for pools without them."""

    dialect: str
    driver: str
    url: str
    connected: bool
    server_version: str | None
    pool_class: str
    pool_size: int | None
    checked_out: int | None
    overflow: int | None
    checked_in: int | None
    #: Why ``connected`` is False, in one line and without secrets; None when connected.
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _engine_for(target: Settings | Engine | None) -> Engine:
    if isinstance(target, Engine):
        return target
    return get_engine(target)


def _async_engine_for(target: Settings | AsyncEngine | None) -> AsyncEngine:
    if target is None or isinstance(target, Settings):
        return get_async_engine(target)
    return target


def is_connected(target: Settings | Engine | None = None) -> bool:
    """True when a ``SELECT 1`` round trip succeeds; False (never an exception) when it does not."""
    return connection_error(target) is None


def connection_error(target: Settings | Engine | None = None) -> str | None:
    """Why a ``SELECT 1`` round trip fails, in one line without secrets; None when it succeeds.

    The reason tells a missing database or a refused login from a server that is down,
    which need different fixes.
    """
    try:
        engine = _engine_for(target)
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1")).scalar_one()
        return None
    except Exception as exc:
        return describe_failure(exc)


async def is_connected_async(target: Settings | AsyncEngine | None = None) -> bool:
    """:func:`is_connected` through the async engine (of the running loop, for ``Settings``)."""
    return await connection_error_async(target) is None


async def connection_error_async(target: Settings | AsyncEngine | None = None) -> str | None:
    """:func:`connection_error` through the async engine."""
    try:
        engine = _async_engine_for(target)
        async with engine.connect() as connection:
            (await connection.execute(sa.text("SELECT 1"))).scalar_one()
        return None
    except Exception as exc:
        return describe_failure(exc)


def describe_failure(exc: BaseException) -> str:
    """One line naming the failure: dbcore's typed message, or the bare class for anything else."""
    if isinstance(exc, DbcoreError):
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        return first if isinstance(exc, DatabaseError) else f"{type(exc).__name__}: {first}"
    if isinstance(exc, sa.exc.SQLAlchemyError):
        # Not classified: SQLAlchemy's text would carry the SQL and parameters, so only the type is told.
        return type(exc).__name__
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _server_version(connection: sa.Connection) -> str:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return str(connection.exec_driver_sql("select sqlite_version()").scalar_one())
    if dialect == "postgresql":
        return str(connection.exec_driver_sql("show server_version").scalar_one())
    if dialect in ("mysql", "mariadb"):
        return str(connection.exec_driver_sql("select version()").scalar_one())
    if dialect == "mssql":
        return str(
            connection.exec_driver_sql("select cast(serverproperty('ProductVersion') as varchar(64))").scalar_one()
        )
    info = connection.dialect.server_version_info
    return ".".join(map(str, info)) if info else "unknown"


def connection_info(target: Settings | Engine | None = None) -> ConnectionInfo:
    """Dialect, driver, server version, masked URL and pool figures; ``connected`` False if unreachable."""
    engine = _engine_for(target)
    version: str | None = None
    error: str | None = None
    try:
        with engine.connect() as connection:
            version = _server_version(connection)
    except Exception as exc:
        error = describe_failure(exc)
    return _info(engine, version, error)


async def connection_info_async(target: Settings | AsyncEngine | None = None) -> ConnectionInfo:
    """:func:`connection_info` through the async engine: the async driver and its pool's figures."""
    engine = _async_engine_for(target)
    version: str | None = None
    error: str | None = None
    try:
        async with engine.connect() as connection:
            version = await connection.run_sync(_server_version)
    except Exception as exc:
        error = describe_failure(exc)
    return _info(engine.sync_engine, version, error)


def _info(engine: Engine, version: str | None, error: str | None) -> ConnectionInfo:
    pool = engine.pool
    queue = pool if isinstance(pool, QueuePool) else None
    # A mysql:// URL may point at MariaDB; the server tells which after connecting.
    name = "mariadb" if getattr(engine.dialect, "is_mariadb", False) else engine.dialect.name
    return ConnectionInfo(
        dialect=name,
        driver=engine.dialect.driver,
        url=mask_url(engine.url),
        connected=error is None,
        server_version=version,
        pool_class=type(pool).__name__,
        pool_size=queue.size() if queue else None,
        checked_out=queue.checkedout() if queue else None,
        overflow=queue.overflow() if queue else None,
        checked_in=queue.checkedin() if queue else None,
        error=error,
    )
