"""Connection health: a real round trip, and what the pool is doing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from dbcore.config import Settings, mask_url
from dbcore.engine import get_engine

__all__ = ["is_connected", "connection_info", "ConnectionInfo"]


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _engine_for(target: Settings | Engine | None) -> Engine:
    if isinstance(target, Engine):
        return target
    return get_engine(target)


def is_connected(target: Settings | Engine | None = None) -> bool:
    """True when a ``SELECT 1`` round trip succeeds; False (never an exception) when it does not."""
    try:
        engine = _engine_for(target)
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1")).scalar_one()
        return True
    except Exception:
        return False


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
    connected = False
    try:
        with engine.connect() as connection:
            version = _server_version(connection)
        connected = True
    except Exception:
        pass
    pool = engine.pool
    queue = pool if isinstance(pool, QueuePool) else None
    # A mysql:// URL may point at MariaDB; the server tells which after connecting.
    name = "mariadb" if getattr(engine.dialect, "is_mariadb", False) else engine.dialect.name
    return ConnectionInfo(
        dialect=name,
        driver=engine.dialect.driver,
        url=mask_url(engine.url),
        connected=connected,
        server_version=version,
        pool_class=type(pool).__name__,
        pool_size=queue.size() if queue else None,
        checked_out=queue.checkedout() if queue else None,
        overflow=queue.overflow() if queue else None,
        checked_in=queue.checkedin() if queue else None,
    )
