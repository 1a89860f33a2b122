"""Settings: read once from the environment, validated, passed explicitly.

``Settings.from_env()`` is the only place dbcore reads environment variables
for its configuration. Everything else takes a ``Settings`` argument (or falls
back to ``Settings.from_env()`` when none is given).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from dbcore.errors import ConfigurationError

__all__ = [
    "Settings",
    "ChromaSettings",
    "PineconeSettings",
    "LiveTestSettings",
    "mask_url",
    "vector_dims_from_env",
    "check_vector_dims",
    "DEFAULT_SQLITE_FILE",
    "DEFAULT_VECTOR_DIMS",
    "VECTOR_MAX_DIM",
]

DEFAULT_SQLITE_FILE = "dbcore.sqlite3"
DEFAULT_VECTOR_DIMS = 384
#: The largest embedding dimension dbcore accepts anywhere (pgvector's limit for ``vector``).
VECTOR_MAX_DIM = 16000

# dialect -> (default driver, {driver: (module to import, extra that installs it)})
_DRIVERS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "sqlite": ("pysqlite", {"pysqlite": ("sqlite3", "")}),
    "postgresql": (
        "psycopg",
        {"psycopg": ("psycopg", "postgres"), "psycopg2": ("psycopg2", "postgres")},
    ),
    "mariadb": ("pymysql", {"pymysql": ("pymysql", "mariadb"), "mysqldb": ("MySQLdb", "mariadb")}),
    "mysql": ("pymysql", {"pymysql": ("pymysql", "mariadb"), "mysqldb": ("MySQLdb", "mariadb")}),
    "mssql": ("pyodbc", {"pyodbc": ("pyodbc", "mssql")}),
}
# Schemes other tools use for the same dialects.
_SCHEME_ALIASES = {"postgres": "postgresql"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

_PASSWORD_IN_TEXT = re.compile(r"(//[^:/@\s]*:)[^@\s]*@")
_VECTOR_BACKENDS = ("integrated", "chroma", "pinecone")


def mask_url(url: str | URL) -> str:
    """Render a URL with its password replaced by ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _PASSWORD_IN_TEXT.sub(r"\1***@", url)


def _int_setting(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not an integer; set it to a whole number such as {default}"
        ) from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} is below the minimum {minimum}")
    return value


def _float_setting(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds, e.g. {default}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"{name}={raw!r} must be a positive, finite number of seconds")
    return value


def _bool_setting(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off")


def _choose_url(env: Mapping[str, str]) -> str:
    primary = env.get("DATABASE_URL")
    alias = env.get("POSTGRES_URL")
    if primary is not None and alias is not None and primary.strip() != alias.strip():
        raise ConfigurationError(
            "DATABASE_URL and POSTGRES_URL are both set and differ; unset one of them "
            f"(DATABASE_URL={mask_url(primary)}, POSTGRES_URL={mask_url(alias)})"
        )
    if primary is not None:
        return _require_nonblank("DATABASE_URL", primary)
    if alias is not None:
        url = _require_nonblank("POSTGRES_URL", alias)
        if url.split(":", 1)[0].split("+", 1)[0] not in ("postgres", "postgresql"):
            raise ConfigurationError(
                f"POSTGRES_URL={mask_url(url)} is not a PostgreSQL URL; use DATABASE_URL for other databases"
            )
        return url
    return f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"


def _require_nonblank(name: str, value: str) -> str:
    if not value.strip():
        raise ConfigurationError(f"{name} is set but empty; unset it to use the SQLite default or give a URL")
    return value.strip()


def parse_database_url(raw: str, *, source: str = "DATABASE_URL") -> URL:
    """Parse and validate a database URL, filling in dbcore's default driver.

    Raises ConfigurationError naming what is wrong; the password is never shown.
    """
    shown = mask_url(raw)
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"{source}={shown!r} is not a database URL ({exc.__class__.__name__}); "
            "expected dialect[+driver]://user:password@host:port/database or sqlite:///path"
        ) from None
    backend = _SCHEME_ALIASES.get(url.get_backend_name(), url.get_backend_name())
    if backend not in _DRIVERS:
        known = ", ".join(sorted(_DRIVERS))
        raise ConfigurationError(
            f"{source}={shown!r} names the unsupported dialect {backend!r}; dbcore supports {known}"
        )
    default_driver, drivers = _DRIVERS[backend]
    driver = url.get_driver_name() if "+" in url.drivername else default_driver
    if driver not in drivers:
        raise ConfigurationError(
            f"{source}={shown!r} names the driver {driver!r}, which dbcore does not support for {backend}; "
            f"use one of {', '.join(sorted(drivers))}"
        )
    url = url.set(drivername=f"{backend}+{driver}")
    _check_url_parts(url, backend, source)
    module, extra = drivers[driver]
    _require_driver(module, extra, driver, source)
    return url


def _check_url_parts(url: URL, backend: str, source: str) -> None:
    shown = mask_url(url)
    if backend == "sqlite":
        if url.host or url.port or url.username:
            raise ConfigurationError(
                f"{source}={shown!r}: an SQLite URL takes no host, port or user; write sqlite:///relative.db or sqlite:////abs/path.db"
            )
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            parent = Path(url.database).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigurationError(f"{source}={shown!r}: the folder {parent} does not exist; create it first")
        return
    if not url.database:
        raise ConfigurationError(f"{source}={shown!r} names no database; append /<database> to the URL")
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigurationError(f"{source}={shown!r}: port {url.port} is out of range")
    if backend == "mssql" and "driver" not in url.query and "odbc_connect" not in url.query:
        raise ConfigurationError(
            f"{source}={shown!r}: an mssql+pyodbc URL needs the ODBC driver name, e.g. "
            "?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes"
        )


def _require_driver(module: str, extra: str, driver: str, source: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'dbcore[{extra}]'" if extra else f"install the {module} module"
        native = f" (the driver loaded but its native library is missing: {exc})" if "lib" in str(exc) else ""
        raise ConfigurationError(f"{source} uses the {driver} driver, which is not installed{native}; {hint}") from None


def check_vector_dims(dims: object, *, source: str = "vector_dims") -> int:
    """``dims`` if it is a usable embedding dimension (1 to VECTOR_MAX_DIM), else ConfigurationError."""
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= VECTOR_MAX_DIM:
        raise ConfigurationError(f"{source}={dims!r} must be a whole number from 1 to {VECTOR_MAX_DIM}")
    return dims


def vector_dims_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``DBCORE_VECTOR_DIMS`` (default 384), validated: the dimension of dbcore's embedding column."""
    env = os.environ if environ is None else environ
    value = _int_setting(env, "DBCORE_VECTOR_DIMS", DEFAULT_VECTOR_DIMS, minimum=1)
    return check_vector_dims(value, source="DBCORE_VECTOR_DIMS")


def _text(env: Mapping[str, str], name: str, default: str = "") -> str:
    return (env.get(name) or default).strip()


@dataclass(frozen=True)
class ChromaSettings:
    """Where the Chroma vector store lives: a server (``host``) or a local folder (``path``)."""

    host: str = ""
    port: int = 8000
    path: str = "./.chroma"
    collection: str = "memories"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChromaSettings:
        """``DBCORE_CHROMA_HOST``, ``_PORT``, ``_PATH`` and ``_COLLECTION``."""
        env = os.environ if environ is None else environ
        raw_port = _text(env, "DBCORE_CHROMA_PORT", "8000")
        try:
            port = int(raw_port)
        except ValueError:
            raise ConfigurationError(f"DBCORE_CHROMA_PORT={raw_port!r} is not a port number") from None
        return cls(
            host=_text(env, "DBCORE_CHROMA_HOST"),
            port=port,
            path=_text(env, "DBCORE_CHROMA_PATH", cls.path),
            collection=_text(env, "DBCORE_CHROMA_COLLECTION", cls.collection),
        )


@dataclass(frozen=True)
class PineconeSettings:
    """The Pinecone index: its key, and its host or name. The key never appears in ``repr()``."""

    api_key: str = field(default="", repr=False)
    host: str = ""
    index: str = ""
    namespace: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PineconeSettings:
        """``PINECONE_API_KEY``, ``DBCORE_PINECONE_HOST``, ``_INDEX`` and ``_NAMESPACE``."""
        env = os.environ if environ is None else environ
        return cls(
            api_key=_text(env, "PINECONE_API_KEY"),
            host=_text(env, "DBCORE_PINECONE_HOST"),
            index=_text(env, "DBCORE_PINECONE_INDEX"),
            namespace=env.get("DBCORE_PINECONE_NAMESPACE") or "",
        )


@dataclass(frozen=True)
class LiveTestSettings:
    """Servers for real-database tests (:mod:`dbcore.testing`): ``DBCORE_TEST_*_URL`` and the required dialects."""

    urls: Mapping[str, str] = field(default_factory=dict, repr=False)
    required_dialects: frozenset[str] = frozenset()

    _URL_VARIABLES = {
        "postgresql": "DBCORE_TEST_POSTGRES_URL",
        "postgresql_novector": "DBCORE_TEST_POSTGRES_NOVECTOR_URL",
        "mariadb": "DBCORE_TEST_MARIADB_URL",
        "mssql": "DBCORE_TEST_MSSQL_URL",
    }

    @classmethod
    def url_variable(cls, dialect: str) -> str:
        """The variable that names the test server of ``dialect``."""
        return cls._URL_VARIABLES[dialect]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LiveTestSettings:
        env = os.environ if environ is None else environ
        urls = {dialect: env[name] for dialect, name in cls._URL_VARIABLES.items() if env.get(name)}
        raw = env.get("DBCORE_REQUIRE_DIALECTS", "")
        required = frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
        return cls(urls=urls, required_dialects=required)


@dataclass(frozen=True)
class Settings:
    """dbcore's configuration. Build it with :meth:`from_env` or directly.

    The password of ``database_url`` never appears in ``repr()`` or errors.
    """

    database_url: str = field(repr=False)
    pool_size: int = 40
    max_overflow: int = -1
    pool_timeout: float = 30.0
    pool_recycle: int = 1800
    connect_timeout: float = 10.0
    echo: bool = False
    retry_attempts: int = 5
    retry_max_seconds: float = 30.0
    sqlite_busy_timeout_ms: int = 5000
    vector_dims: int = DEFAULT_VECTOR_DIMS
    vector_backend: str = "integrated"
    system_api_key: str | None = field(default=None, repr=False)
    chroma: ChromaSettings = field(default_factory=ChromaSettings)
    pinecone: PineconeSettings = field(default_factory=PineconeSettings, repr=False)

    def __post_init__(self) -> None:
        # Normalise and validate once, so an invalid Settings cannot exist.
        object.__setattr__(
            self, "database_url", parse_database_url(self.database_url).render_as_string(hide_password=False)
        )
        if self.pool_size < 1:
            raise ConfigurationError(f"pool_size={self.pool_size} must be at least 1")
        if self.max_overflow < -1:
            raise ConfigurationError(f"max_overflow={self.max_overflow} must be -1 (unbounded) or >= 0")
        if self.retry_attempts < 1:
            raise ConfigurationError(f"retry_attempts={self.retry_attempts} must be at least 1")
        check_vector_dims(self.vector_dims)
        if self.vector_backend not in _VECTOR_BACKENDS:
            raise ConfigurationError(
                f"vector_backend={self.vector_backend!r} is unknown; use one of {', '.join(_VECTOR_BACKENDS)}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        url = _choose_url(env)
        source = "DATABASE_URL" if "DATABASE_URL" in env else ("POSTGRES_URL" if "POSTGRES_URL" in env else "default")
        parsed = parse_database_url(url, source=source)
        return cls(
            database_url=parsed.render_as_string(hide_password=False),
            pool_size=_int_setting(env, "DBCORE_POOL_SIZE", 40, minimum=1),
            max_overflow=_int_setting(env, "DBCORE_MAX_OVERFLOW", -1, minimum=-1),
            pool_timeout=_float_setting(env, "DBCORE_POOL_TIMEOUT", 30.0),
            pool_recycle=_int_setting(env, "DBCORE_POOL_RECYCLE", 1800, minimum=-1),
            connect_timeout=_float_setting(env, "DBCORE_CONNECT_TIMEOUT", 10.0),
            echo=_bool_setting(env, "DBCORE_ECHO", False),
            retry_attempts=_int_setting(env, "DBCORE_RETRY_ATTEMPTS", 5, minimum=1),
            retry_max_seconds=_float_setting(env, "DBCORE_RETRY_MAX_SECONDS", 30.0),
            sqlite_busy_timeout_ms=_int_setting(env, "DBCORE_SQLITE_BUSY_TIMEOUT_MS", 5000, minimum=0),
            vector_dims=vector_dims_from_env(env),
            vector_backend=(env.get("DBCORE_VECTOR_BACKEND") or "integrated").strip().lower(),
            system_api_key=env.get("DBCORE_SYSTEM_API_KEY") or None,
            chroma=ChromaSettings.from_env(env),
            pinecone=PineconeSettings.from_env(env),
        )

    def replace(self, **changes: object) -> Settings:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def url(self) -> URL:
        """The parsed database URL, password included (never log it; use ``masked_url``)."""
        return make_url(self.database_url)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def __repr__(self) -> str:
        return (
            f"Settings(database_url={self.masked_url!r}, pool_size={self.pool_size}, "
            f"max_overflow={self.max_overflow}, pool_timeout={self.pool_timeout}, echo={self.echo}, "
            f"vector_backend={self.vector_backend!r}, vector_dims={self.vector_dims})"
        )

    __str__ = __repr__
