"""Settings: read once from the environment, validated, passed explicitly.

``Settings.from_env()`` is the only place dbcore reads environment variables
for its configuration. Everything else takes a ``Settings`` argument (or falls
back to ``Settings.from_env()`` when none is given).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from dbcore import embedded
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
#: ``postgresql+embedded:///data/dir`` runs the embedded PostgreSQL on that folder (dbcore.embedded).
EMBEDDED_DRIVER = "embedded"
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
# The async driver the same URL selects (get_async_engine): sync driver -> (async driver, module, extra).
# psycopg 3 is one package for both; SQLAlchemy picks its async dialect for create_async_engine.
_ASYNC_DRIVERS: dict[str, tuple[str, str, str]] = {
    "pysqlite": ("aiosqlite", "aiosqlite", "asyncio"),
    "psycopg": ("psycopg", "psycopg", "postgres"),
    "psycopg2": ("psycopg", "psycopg", "postgres"),
    "pymysql": ("asyncmy", "asyncmy", "mariadb"),
    "mysqldb": ("asyncmy", "asyncmy", "mariadb"),
    "pyodbc": ("aioodbc", "aioodbc", "mssql"),
}
# Schemes other tools use for the same dialects.
_SCHEME_ALIASES = {"postgres": "postgresql"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

_VECTOR_BACKENDS = ("integrated", "chroma", "pinecone")


def mask_url(url: str | URL) -> str:
    """Render a URL with its password replaced by ``***``.

    Text that does not parse as a URL, or whose password held an unescaped ``@``
    (so that part of it would be read as the host), is shown with its whole user
    part hidden instead: everything between ``://`` and the last ``@``.
    """
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _hide_userinfo(text)
    if _has_stray_at(text, parsed):
        return _hide_userinfo(text)
    return parsed.render_as_string(hide_password=True)


def _has_stray_at(text: str, parsed: URL) -> bool:
    """Whether an ``@`` follows the one that ends the password in ``text``.

    The password then held an unescaped ``@`` (a URL's password ends at its first ``@``), and the
    rest of it was read as the host, database or query.
    """
    if parsed.password is None:
        return False
    rest = text.partition("://")[2]
    return rest.count("@", rest.find(":")) > 1 or "@" in (parsed.host or "")


def _hide_userinfo(text: str) -> str:
    # A password may hold any character, so where it ends cannot be known in text that did
    # not parse: hide everything up to the last "@", at the cost of some host or query.
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "", text
    _, at, after = rest.rpartition("@")
    return f"{scheme}{separator}***@{after}" if at else text


_UNSET: Any = object()


@dataclass(frozen=True)
class _Rule:
    """What one setting accepts, checked alike for a field given to a constructor and for its variable.

    Errors name the field (constructor) or the variable (``from_env``) and the
    value, except a secret's, of which only the type is shown.
    """

    variable: str
    problem: str  # follows "name=value" in the error
    parse: Callable[[str], Any]  # the variable's text -> a value; ValueError when it cannot be one
    accepts: Callable[[Any], bool]
    secret: bool = False

    def check(self, name: str, value: Any) -> None:
        if not self.accepts(value):
            self._refuse(name, value)

    def read(self, env: Mapping[str, str]) -> Any:
        """The variable's value, checked; ``_UNSET`` when unset or blank (the field's default applies)."""
        raw = env.get(self.variable)
        if raw is None or not raw.strip():
            return _UNSET
        try:
            value = self.parse(raw)
        except ValueError:
            self._refuse(self.variable, raw)
        if not self.accepts(value):
            self._refuse(self.variable, raw)
        return value

    def _refuse(self, name: str, value: Any) -> NoReturn:
        shown = f"<{type(value).__name__}, hidden>" if self.secret else repr(value)
        raise ConfigurationError(f"{name}={shown} {self.problem}")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole_rule(
    variable: str, minimum: int, maximum: int | None = None, note: str = "", *, optional: bool = False
) -> _Rule:
    bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
    return _Rule(
        variable,
        f"must be a whole number {bound}{note}",
        lambda raw: int(raw.strip()),
        lambda value: (
            (optional and value is None)
            or (_whole(value) and value >= minimum and (maximum is None or value <= maximum))
        ),
    )


def _seconds_rule(variable: str) -> _Rule:
    return _Rule(
        variable,
        "must be a positive, finite number of seconds",
        lambda raw: float(raw.strip()),
        lambda value: (_whole(value) or isinstance(value, float)) and 0 < value and math.isfinite(value),
    )


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(raw)


def _bool_rule(variable: str) -> _Rule:
    return _Rule(
        variable,
        "must be a boolean (True/False; in the environment 1/0, true/false, yes/no, on/off)",
        _parse_bool,
        lambda value: isinstance(value, bool),
    )


def _text_rule(variable: str, *, strip: bool = True, secret: bool = False) -> _Rule:
    return _Rule(
        variable,
        "must be a string",
        (lambda raw: raw.strip()) if strip else (lambda raw: raw),
        lambda value: isinstance(value, str),
        secret=secret,
    )


_VECTOR_DIMS = _whole_rule("DBCORE_VECTOR_DIMS", 1, VECTOR_MAX_DIM)

# Settings' fields, database_url and the nested settings aside (checked in __post_init__).
_SETTINGS_RULES: dict[str, _Rule] = {
    "pool_size": _whole_rule("DBCORE_POOL_SIZE", 1),
    "max_overflow": _whole_rule("DBCORE_MAX_OVERFLOW", -1, note=" (-1: unbounded)"),
    "pool_timeout": _seconds_rule("DBCORE_POOL_TIMEOUT"),
    "pool_recycle": _whole_rule("DBCORE_POOL_RECYCLE", -1, note=" seconds (-1: never recycle)"),
    "connect_timeout": _seconds_rule("DBCORE_CONNECT_TIMEOUT"),
    "echo": _bool_rule("DBCORE_ECHO"),
    "retry_attempts": _whole_rule(
        "DBCORE_RETRY_ATTEMPTS",
        1,
        note=" (or unset/None: no cap, DBCORE_RETRY_MAX_SECONDS alone bounds retries)",
        optional=True,
    ),
    "retry_max_seconds": _seconds_rule("DBCORE_RETRY_MAX_SECONDS"),
    "sqlite_busy_timeout_ms": _whole_rule("DBCORE_SQLITE_BUSY_TIMEOUT_MS", 0),
    "vector_dims": _VECTOR_DIMS,
    "vector_backend": _Rule(
        "DBCORE_VECTOR_BACKEND",
        f"is unknown; use one of {', '.join(_VECTOR_BACKENDS)}",
        lambda raw: raw.strip().lower(),
        lambda value: isinstance(value, str) and value in _VECTOR_BACKENDS,
    ),
    "vector_push_on_commit": _bool_rule("DBCORE_VECTOR_PUSH_ON_COMMIT"),
    "vector_ann": _bool_rule("DBCORE_VECTOR_ANN"),
    "system_api_key": _Rule(
        "DBCORE_SYSTEM_API_KEY",
        "must be a non-empty string, or None",
        lambda raw: raw,
        lambda value: value is None or (isinstance(value, str) and value != ""),
        secret=True,
    ),
}

_CHROMA_RULES: dict[str, _Rule] = {
    "host": _text_rule("DBCORE_CHROMA_HOST"),
    "port": _whole_rule("DBCORE_CHROMA_PORT", 1, 65535, note=" (a port number)"),
    "path": _text_rule("DBCORE_CHROMA_PATH"),
    "collection": _text_rule("DBCORE_CHROMA_COLLECTION"),
}

_PINECONE_RULES: dict[str, _Rule] = {
    "api_key": _text_rule("PINECONE_API_KEY", secret=True),
    "host": _text_rule("DBCORE_PINECONE_HOST"),
    "index": _text_rule("DBCORE_PINECONE_INDEX"),
    "namespace": _text_rule("DBCORE_PINECONE_NAMESPACE", strip=False),
}


def _check_fields(settings: object, rules: Mapping[str, _Rule]) -> None:
    for name, rule in rules.items():
        rule.check(name, getattr(settings, name))


def _read_fields(env: Mapping[str, str], rules: Mapping[str, _Rule]) -> dict[str, Any]:
    """The fields whose variables are set, checked; the others keep their defaults."""
    values = {name: rule.read(env) for name, rule in rules.items()}
    return {name: value for name, value in values.items() if value is not _UNSET}


def _choose_url(env: Mapping[str, str]) -> str:
    primary = env.get("DATABASE_URL")
    alias = env.get("POSTGRES_URL")
    embedded_dir = env.get("DBCORE_EMBEDDED_PG_DIR")
    if embedded_dir is not None and embedded_dir.strip():
        given = [name for name in ("DATABASE_URL", "POSTGRES_URL") if env.get(name) is not None]
        if given:
            raise ConfigurationError(
                f"DBCORE_EMBEDDED_PG_DIR and {' and '.join(given)} are both set; unset one of them "
                "(the embedded PostgreSQL is used only when no database URL is given)"
            )
        return f"postgresql+{EMBEDDED_DRIVER}:///{Path(embedded_dir.strip()).expanduser().resolve()}"
    if primary is not None and alias is not None and primary.strip() != alias.strip():
        shown = mask_url(primary.strip()), mask_url(alias.strip())
        where = " (only in what is hidden)" if shown[0] == shown[1] else ""
        raise ConfigurationError(
            f"DATABASE_URL and POSTGRES_URL are both set and differ{where}; unset one of them "
            f"(DATABASE_URL={shown[0]}, POSTGRES_URL={shown[1]})"
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


def parse_database_url(raw: str | URL, *, source: str = "DATABASE_URL") -> URL:
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
    if _has_stray_at(raw if isinstance(raw, str) else raw.render_as_string(hide_password=False), url):
        raise ConfigurationError(
            f"{source}={shown!r} has an '@' after the one that ends the password, so part of the password would be "
            "read as the host or database; percent-encode '@' in the password (write %40), and elsewhere in the URL"
        )
    backend = _SCHEME_ALIASES.get(url.get_backend_name(), url.get_backend_name())
    if backend == "postgresql" and url.drivername.partition("+")[2] == EMBEDDED_DRIVER:
        url = _start_embedded(url, source)
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


def _start_embedded(url: URL, source: str) -> URL:
    """``postgresql+embedded:///data/dir``: start (or join) the embedded server and return its real URL."""
    shown = mask_url(url)
    if url.host or url.port or url.username or url.password or url.query:
        raise ConfigurationError(
            f"{source}={shown!r}: an embedded PostgreSQL URL takes only the data folder: "
            "postgresql+embedded:///relative/dir or postgresql+embedded:////abs/dir"
        )
    if not url.database:
        raise ConfigurationError(f"{source}={shown!r} names no data folder for the embedded PostgreSQL")
    return embedded.start(url.database, source=source)


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


def async_url(url: URL, *, source: str = "DATABASE_URL") -> URL:
    """``url`` (already parsed by :func:`parse_database_url`) with its driver's async counterpart."""
    driver, module, extra = _ASYNC_DRIVERS[url.get_driver_name()]
    _require_driver("greenlet", "asyncio", "asyncio (greenlet)", source)
    _require_driver(module, extra, driver, source)
    return url.set(drivername=f"{url.get_backend_name()}+{driver}")


def check_vector_dims(dims: object, *, source: str = "vector_dims") -> int:
    """``dims`` if it is a usable embedding dimension (1 to VECTOR_MAX_DIM), else ConfigurationError."""
    _VECTOR_DIMS.check(source, dims)
    return cast(int, dims)


def vector_dims_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``DBCORE_VECTOR_DIMS`` (default 384), validated: the dimension of dbcore's embedding column."""
    value = _VECTOR_DIMS.read(os.environ if environ is None else environ)
    return DEFAULT_VECTOR_DIMS if value is _UNSET else int(value)


@dataclass(frozen=True)
class ChromaSettings:
    """Where the Chroma vector store lives: a server (``host``) or a local folder (``path``)."""

    host: str = ""
    port: int = 8000
    path: str = "./.chroma"
    collection: str = "memories"

    def __post_init__(self) -> None:
        _check_fields(self, _CHROMA_RULES)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChromaSettings:
        """``DBCORE_CHROMA_HOST``, ``_PORT``, ``_PATH`` and ``_COLLECTION``."""
        return cls(**_read_fields(os.environ if environ is None else environ, _CHROMA_RULES))


@dataclass(frozen=True)
class PineconeSettings:
    """The Pinecone index: its key, and its host or name. The key never appears in ``repr()``."""

    api_key: str = field(default="", repr=False)
    host: str = ""
    index: str = ""
    namespace: str = ""

    def __post_init__(self) -> None:
        _check_fields(self, _PINECONE_RULES)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PineconeSettings:
        """``PINECONE_API_KEY``, ``DBCORE_PINECONE_HOST``, ``_INDEX`` and ``_NAMESPACE``."""
        return cls(**_read_fields(os.environ if environ is None else environ, _PINECONE_RULES))


@dataclass(frozen=True)
class LiveTestSettings:
    """Servers for real-database tests (:mod:`dbcore.testing`): ``DBCORE_TEST_*_URL`` and the required dialects."""

    urls: Mapping[str, str] = field(default_factory=dict, repr=False)
    required_dialects: frozenset[str] = frozenset()
    #: ``DBCORE_TEST_URL``: the server the pytest plugin makes its test databases on.
    test_url: str = field(default="", repr=False)

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
        return cls(urls=urls, required_dialects=required, test_url=env.get("DBCORE_TEST_URL", ""))


@dataclass(frozen=True)
class Settings:
    """dbcore's configuration. Build it with :meth:`from_env` or directly: both check every field alike.

    The password of ``database_url`` never appears in ``repr()`` or errors.
    ``retry_attempts=None`` (the default) leaves retries bounded by ``retry_max_seconds`` alone.
    ``vector_push_on_commit`` (``DBCORE_VECTOR_PUSH_ON_COMMIT``, default true): with an
    external vector store, a session's COMMIT sends the memories it changed to the store
    (see :mod:`dbcore.vector_push`); false leaves them all to ``dbcore vectors sync``.
    ``vector_ann`` (``DBCORE_VECTOR_ANN``, default false): the integrated store's
    ``ann=True``, an approximate faiss index for large stores without pgvector
    (:mod:`dbcore.vectorstores.ann`).
    """

    database_url: str = field(repr=False)
    pool_size: int = 40
    max_overflow: int = -1
    pool_timeout: float = 30.0
    pool_recycle: int = 1800
    connect_timeout: float = 10.0
    echo: bool = False
    retry_attempts: int | None = None
    retry_max_seconds: float = 30.0
    sqlite_busy_timeout_ms: int = 5000
    vector_dims: int = DEFAULT_VECTOR_DIMS
    vector_backend: str = "integrated"
    vector_push_on_commit: bool = True
    vector_ann: bool = False
    system_api_key: str | None = field(default=None, repr=False)
    chroma: ChromaSettings = field(default_factory=ChromaSettings)
    pinecone: PineconeSettings = field(default_factory=PineconeSettings, repr=False)

    def __post_init__(self) -> None:
        # Normalise and validate once, so an invalid Settings cannot exist.
        if not isinstance(self.database_url, (str, URL)):
            raise ConfigurationError(f"database_url must be a URL string, not {type(self.database_url).__name__}")
        url = parse_database_url(self.database_url, source="database_url")
        object.__setattr__(self, "database_url", url.render_as_string(hide_password=False))
        _check_fields(self, _SETTINGS_RULES)
        for name, kind in (("chroma", ChromaSettings), ("pinecone", PineconeSettings)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigurationError(f"{name} must be a {kind.__name__}, not {type(getattr(self, name)).__name__}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default: ``os.environ``); unset or blank variables keep the defaults."""
        env = os.environ if environ is None else environ
        url = _choose_url(env)
        given = [name for name in ("DATABASE_URL", "POSTGRES_URL", "DBCORE_EMBEDDED_PG_DIR") if env.get(name)]
        source = given[0] if given else "default"
        parsed = parse_database_url(url, source=source)
        return cls(
            database_url=parsed.render_as_string(hide_password=False),
            chroma=ChromaSettings.from_env(env),
            pinecone=PineconeSettings.from_env(env),
            **_read_fields(env, _SETTINGS_RULES),
        )

    def replace(self, **changes: object) -> Settings:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def url(self) -> URL:
        """The parsed database URL, password included (never log it; use ``masked_url``)."""
        return make_url(self.database_url)

    @property
    def async_url(self) -> URL:
        """The same database through its async driver (aiosqlite, psycopg, asyncmy, aioodbc).

        Raises ConfigurationError naming the extra to install when the driver, or
        greenlet (which SQLAlchemy's asyncio layer runs on), is missing.
        """
        return async_url(self.url)

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
