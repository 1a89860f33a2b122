"""Bad inputs refused before any database is reached: Settings, the environment, URLs, the command line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dbcore
from dbcore.errors import ConfigurationError

from .harness import INJECTION, SECRET, Case

MEMORY_URL = "sqlite:///:memory:"


def settings(**fields: Any) -> Case:
    """``Settings(database_url=sqlite memory, **fields)`` must raise ConfigurationError naming the field."""
    [(name, value)] = fields.items()
    return Case(
        f"settings-{name}-{value!r}",
        lambda: dbcore.Settings(database_url=MEMORY_URL, **fields),
        ConfigurationError,
        rf"\b{name}\b",
    )


def env(variable: str, value: str, names: str | None = None, **more: str) -> Case:
    """``Settings.from_env(environ={variable: value})`` must raise ConfigurationError naming the variable."""
    environ = {"DATABASE_URL": MEMORY_URL, **more, variable: value}
    if variable == "POSTGRES_URL" and "DATABASE_URL" not in more:
        environ.pop("DATABASE_URL")
    return Case(
        f"env-{variable}-{value!r}",
        lambda: dbcore.Settings.from_env(environ=environ),
        ConfigurationError,
        names or rf"\b{variable}\b",
    )


def url(case_id: str, raw: str, names: str) -> Case:
    """A bad database URL given to the constructor: ConfigurationError naming the problem, never the password."""
    return Case(f"url-{case_id}", lambda: dbcore.Settings(database_url=raw), ConfigurationError, names)


def env_url(case_id: str, raw: str, names: str) -> Case:
    return Case(
        f"env-url-{case_id}",
        lambda: dbcore.Settings.from_env(environ={"DATABASE_URL": raw}),
        ConfigurationError,
        names,
    )


SETTINGS_CASES: list[Case] = [
    settings(pool_size=0),
    settings(pool_size=-5),
    settings(pool_size="40"),
    settings(max_overflow=-2),
    settings(retry_attempts=0),
    settings(vector_dims=0),
    settings(vector_dims=16001),
    settings(vector_dims=True),
    settings(vector_dims="384"),
    settings(vector_backend="faiss"),
    settings(vector_backend=""),
    settings(vector_backend=INJECTION),
    settings(connect_timeout=-1),
    settings(connect_timeout=float("inf")),
    settings(pool_timeout=float("nan")),
    settings(pool_timeout="30"),
    settings(retry_max_seconds=0),
    settings(sqlite_busy_timeout_ms=-5),
    settings(pool_recycle=-9),
    settings(echo="no"),
]

ENV_CASES: list[Case] = [
    env("DBCORE_POOL_SIZE", "abc"),
    env("DBCORE_POOL_SIZE", "0"),
    env("DBCORE_POOL_SIZE", "1.5"),
    env("DBCORE_POOL_SIZE", "40abc"),
    env("DBCORE_MAX_OVERFLOW", "-2"),
    env("DBCORE_POOL_TIMEOUT", "nan"),
    env("DBCORE_POOL_TIMEOUT", "-1"),
    env("DBCORE_POOL_TIMEOUT", "inf"),
    env("DBCORE_POOL_TIMEOUT", "soon"),
    env("DBCORE_CONNECT_TIMEOUT", "0"),
    env("DBCORE_RETRY_ATTEMPTS", "0"),
    env("DBCORE_RETRY_MAX_SECONDS", "-1"),
    env("DBCORE_SQLITE_BUSY_TIMEOUT_MS", "-1"),
    env("DBCORE_POOL_RECYCLE", "-9"),
    env("DBCORE_ECHO", "maybe"),
    env("DBCORE_VECTOR_DIMS", "0"),
    env("DBCORE_VECTOR_DIMS", "16001"),
    env("DBCORE_VECTOR_DIMS", "2.5"),
    env("DBCORE_VECTOR_BACKEND", "faiss", r"vector_backend|DBCORE_VECTOR_BACKEND"),
    env("DBCORE_CHROMA_PORT", "abc"),
    env("DATABASE_URL", "  "),
    env("POSTGRES_URL", f"mysql://u:{SECRET}@h/db"),
    env(
        "POSTGRES_URL",
        f"postgresql://u:{SECRET}@h/other",
        r"POSTGRES_URL",
        DATABASE_URL=f"postgresql://u:{SECRET}@h/db",
    ),
    env(
        "POSTGRES_URL", f"postgresql://u:{SECRET} x@h/b", r"POSTGRES_URL", DATABASE_URL=f"postgresql://u:{SECRET} x@h/a"
    ),
]

URL_CASES: list[Case] = [
    url("not-a-url", "not a url", r"not a database URL"),
    url("empty", "", r"not a database URL|empty"),
    url("http-scheme", f"http://u:{SECRET}@example.com/db", r"unsupported dialect 'http'"),
    url("oracle-scheme", f"oracle://u:{SECRET}@h/db", r"unsupported dialect 'oracle'"),
    url("injection-scheme", INJECTION + "://h/db", r"not a database URL|unsupported dialect"),
    url("unknown-driver", f"postgresql+asyncpg://u:{SECRET}@h/db", r"driver 'asyncpg'"),
    url("driver-of-other-dialect", f"mysql+psycopg://u:{SECRET}@h/db", r"driver 'psycopg'"),
    url("port-too-big", f"postgresql://u:{SECRET}@h:99999/db", r"port"),
    url("port-zero", f"postgresql://u:{SECRET}@h:0/db", r"port"),
    url("port-text", f"postgresql://u:{SECRET}@h:abc/db", r"port|not a database URL"),
    url("no-database", f"postgresql://u:{SECRET}@h:5432/", r"names no database"),
    url("no-database-mariadb", f"mariadb://u:{SECRET}@h", r"names no database"),
    url("mssql-without-odbc-driver", f"mssql+pyodbc://u:{SECRET}@h/db", r"ODBC driver"),
    url("sqlite-with-host", "sqlite://somehost/x.db", r"SQLite URL takes no host"),
    url("sqlite-missing-folder", "sqlite:////no/such/folder/x.db", r"does not exist"),
    url("password-with-space", f"postgresql://u:{SECRET} x@h:99999/db", r"port"),
    url("password-with-at", f"postgresql://u:{SECRET}@x@h:99999/db", r"percent-encode .@. in the password"),
    env_url("oracle-scheme", f"oracle://u:{SECRET}@h/db", r"DATABASE_URL.*oracle"),
    env_url("port-too-big", f"mariadb://u:{SECRET}@h:70000/db", r"DATABASE_URL.*port"),
    env_url("no-database", f"postgres://u:{SECRET}@h", r"DATABASE_URL.*no database"),
    env_url("password-with-space", f"postgresql://u:{SECRET} x@h:99999/db", r"DATABASE_URL"),
]


@dataclass(frozen=True)
class CliCase:
    """``dbcore <argv>`` with ``env``: a non-zero exit and one line saying what was wrong (``names``)."""

    id: str
    argv: tuple[str, ...]
    names: str
    env: Mapping[str, str]

    def __str__(self) -> str:
        return self.id


def cli(case_id: str, argv: list[str], names: str, **environ: str) -> CliCase:
    return CliCase(f"cli-{case_id}", tuple(argv), names, environ)


CLI_CASES: list[CliCase] = [
    cli("no-command", [], r"required"),
    cli("unknown-command", ["frobnicate"], r"invalid choice: 'frobnicate'"),
    cli("injection-command", [INJECTION], r"invalid choice"),
    cli("extra-argument", ["init", "extra"], r"unrecognized arguments: extra"),
    cli("unknown-option", ["check-models", "--fast"], r"unrecognized arguments: --fast"),
    cli("vectors-without-action", ["vectors"], r"action"),
    cli("vectors-unknown-action", ["vectors", "explode"], r"invalid choice: 'explode'"),
    cli("batch-size-text", ["vectors", "sync", "--batch-size", "abc"], r"--batch-size"),
    cli("batch-size-zero", ["vectors", "sync", "--batch-size", "0"], r"batch.size"),
    cli("batch-size-negative", ["vectors", "reindex", "--batch-size", "-5"], r"batch.size"),
    cli("migrate-unknown-option", ["migrate", "--bogus"], r"unrecognized arguments: --bogus"),
    cli("migrate-unknown-revision", ["migrate", "nonexistent_rev"], r"nonexistent_rev"),
    cli("migrate-injection-revision", ["migrate", INJECTION], r"revision"),
    cli("migrate-sql-unknown-revision", ["migrate", "--sql", "zzz"], r"zzz"),
    cli("bad-url-scheme", ["init"], r"oracle", DATABASE_URL=f"oracle://u:{SECRET}@h/db"),
    cli("bad-url-port", ["doctor"], r"port", DATABASE_URL=f"postgresql://u:{SECRET}@h:99999/db"),
    cli("empty-url", ["seed"], r"DATABASE_URL", DATABASE_URL=" "),
    cli("bad-pool-size", ["doctor"], r"DBCORE_POOL_SIZE", DBCORE_POOL_SIZE="abc"),
    cli("bad-backend", ["vectors", "verify"], r"vector_backend|DBCORE_VECTOR_BACKEND", DBCORE_VECTOR_BACKEND="faiss"),
    cli("bad-vector-dims", ["init"], r"DBCORE_VECTOR_DIMS", DBCORE_VECTOR_DIMS="0"),
]
