"""Settings from the environment: defaults, aliases, and refusals with a clear ConfigurationError."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import dbcore
from dbcore import ConfigurationError, Settings
from dbcore.config import ChromaSettings, PineconeSettings, mask_url

SECRET = "s3cr3t-pa55"

BAD_ENVIRONMENTS = {
    "not a url": {"DATABASE_URL": "definitely not a url"},
    "empty url": {"DATABASE_URL": "   "},
    "unknown dialect": {"DATABASE_URL": f"oracle://scott:{SECRET}@db.example/orcl"},
    "unknown driver": {"DATABASE_URL": f"postgresql+nodriver://u:{SECRET}@h/db"},
    "driver not installed": {"DATABASE_URL": f"mysql+mysqldb://u:{SECRET}@h/db"},
    "server url without database": {"DATABASE_URL": f"postgresql://u:{SECRET}@localhost"},
    "port out of range": {"DATABASE_URL": f"postgresql://u:{SECRET}@localhost:70000/db"},
    "non-numeric port": {"DATABASE_URL": f"postgresql://u:{SECRET}@localhost:abc/db"},
    "sqlite with host": {"DATABASE_URL": "sqlite://somehost/file.db"},
    "sqlite folder missing": {"DATABASE_URL": "sqlite:////no/such/folder/x.db"},
    "mssql without odbc driver": {"DATABASE_URL": f"mssql+pyodbc://sa:{SECRET}@h/db"},
    "postgres alias not postgres": {"POSTGRES_URL": f"mysql+pymysql://u:{SECRET}@h/db"},
    "conflicting url and alias": {
        "DATABASE_URL": f"postgresql://u:{SECRET}@a/db1",
        "POSTGRES_URL": f"postgresql://u:{SECRET}@b/db2",
    },
    "pool size not a number": {"DBCORE_POOL_SIZE": "forty"},
    "pool size zero": {"DBCORE_POOL_SIZE": "0"},
    "pool size negative": {"DBCORE_POOL_SIZE": "-3"},
    "max overflow not a number": {"DBCORE_MAX_OVERFLOW": "unbounded"},
    "max overflow below -1": {"DBCORE_MAX_OVERFLOW": "-2"},
    "pool timeout not a number": {"DBCORE_POOL_TIMEOUT": "soon"},
    "pool timeout negative": {"DBCORE_POOL_TIMEOUT": "-1"},
    "pool timeout infinite": {"DBCORE_POOL_TIMEOUT": "inf"},
    "echo not a boolean": {"DBCORE_ECHO": "maybe"},
    "retry attempts zero": {"DBCORE_RETRY_ATTEMPTS": "0"},
    "vector dims not a number": {"DBCORE_VECTOR_DIMS": "384d"},
    "unknown vector backend": {"DBCORE_VECTOR_BACKEND": "faiss"},
}


@pytest.mark.parametrize("environ", BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS.keys())
def test_bad_configuration_raises_configuration_error_without_password(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)
    message = str(caught.value)
    assert SECRET not in message
    assert len(message) > 30, "the message must say what is wrong and how to fix it"


def test_at_least_fifteen_bad_inputs_are_covered() -> None:
    assert len(BAD_ENVIRONMENTS) >= 15


def test_messages_name_the_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"dbcore\[mariadb\]"):
        Settings.from_env({"DATABASE_URL": "mysql+mysqldb://u@h/db"})
    with pytest.raises(ConfigurationError, match="DBCORE_POOL_SIZE"):
        Settings.from_env({"DBCORE_POOL_SIZE": "forty"})
    with pytest.raises(ConfigurationError, match="supports"):
        Settings.from_env({"DATABASE_URL": "oracle://h/db"})


def test_default_is_sqlite_file_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.dialect == "sqlite"
    assert settings.url.database == str(tmp_path / "dbcore.sqlite3")
    assert (settings.pool_size, settings.max_overflow) == (40, -1)
    assert settings.echo is False
    assert (settings.retry_attempts, settings.retry_max_seconds) == (None, 30.0), "retries bounded by time alone"


def test_postgres_url_alias_and_default_driver() -> None:
    settings = Settings.from_env({"POSTGRES_URL": "postgres://agent:pw@db.internal:5433/agents"})
    assert settings.url.drivername == "postgresql+psycopg"
    assert settings.url.port == 5433
    same = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://agent:pw@db.internal:5433/agents",
            "POSTGRES_URL": "postgresql://agent:pw@db.internal:5433/agents",
        }
    )
    assert same.url.database == "agents"


def test_default_drivers_per_dialect() -> None:
    assert Settings.from_env({"DATABASE_URL": "mariadb://u@h/db"}).url.drivername == "mariadb+pymysql"
    assert Settings.from_env({"DATABASE_URL": "mysql://u@h/db"}).url.drivername == "mysql+pymysql"


def test_numeric_and_boolean_settings_are_read() -> None:
    settings = Settings.from_env(
        {"DBCORE_POOL_SIZE": "12", "DBCORE_MAX_OVERFLOW": "5", "DBCORE_POOL_TIMEOUT": "2.5", "DBCORE_ECHO": "yes"}
    )
    assert (settings.pool_size, settings.max_overflow, settings.pool_timeout, settings.echo) == (12, 5, 2.5, True)


def test_password_never_in_repr_or_masked_url() -> None:
    settings = Settings.from_env({"DATABASE_URL": f"postgresql://agent:{SECRET}@db/agents"})
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in settings.masked_url
    assert "***" in settings.masked_url
    assert SECRET in settings.url.password  # still usable for connecting


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        Settings(database_url="sqlite:///:memory:", pool_size=0)
    with pytest.raises(ConfigurationError):
        Settings(database_url="nonsense")


def test_public_names() -> None:
    for name in ("get_session", "is_connected", "connection_info", "Settings", "DbcoreError", "ConfigurationError"):
        assert hasattr(dbcore, name)


# One rule per field: (field, its variable, a value the rule refuses, that value as the variable's text).
# Both ways of building Settings must refuse it, each naming what it was given.
REFUSED = [
    ("connect_timeout", "DBCORE_CONNECT_TIMEOUT", -1, "-1"),
    ("connect_timeout", "DBCORE_CONNECT_TIMEOUT", 0.0, "0"),
    ("pool_timeout", "DBCORE_POOL_TIMEOUT", math.nan, "nan"),
    ("pool_timeout", "DBCORE_POOL_TIMEOUT", math.inf, "inf"),
    ("pool_timeout", "DBCORE_POOL_TIMEOUT", "30", "thirty"),
    ("retry_max_seconds", "DBCORE_RETRY_MAX_SECONDS", 0, "0"),
    ("retry_max_seconds", "DBCORE_RETRY_MAX_SECONDS", -5.0, "-5"),
    ("retry_attempts", "DBCORE_RETRY_ATTEMPTS", 0, "0"),
    ("retry_attempts", "DBCORE_RETRY_ATTEMPTS", 2.5, "2.5"),
    ("sqlite_busy_timeout_ms", "DBCORE_SQLITE_BUSY_TIMEOUT_MS", -5, "-5"),
    ("pool_recycle", "DBCORE_POOL_RECYCLE", -9, "-9"),
    ("pool_recycle", "DBCORE_POOL_RECYCLE", 1800.5, "1800.5"),
    ("pool_size", "DBCORE_POOL_SIZE", 0, "0"),
    ("pool_size", "DBCORE_POOL_SIZE", True, "True"),
    ("pool_size", "DBCORE_POOL_SIZE", "40", "forty"),
    ("max_overflow", "DBCORE_MAX_OVERFLOW", -2, "-2"),
    ("echo", "DBCORE_ECHO", "maybe", "maybe"),
    ("echo", "DBCORE_ECHO", 1, "2"),
    ("vector_dims", "DBCORE_VECTOR_DIMS", 0, "0"),
    ("vector_dims", "DBCORE_VECTOR_DIMS", 16001, "16001"),
    ("vector_dims", "DBCORE_VECTOR_DIMS", False, "384d"),
    ("vector_backend", "DBCORE_VECTOR_BACKEND", "faiss", "faiss"),
    ("vector_push_on_commit", "DBCORE_VECTOR_PUSH_ON_COMMIT", "no", "later"),
    ("vector_ann", "DBCORE_VECTOR_ANN", "yes please", "yes please"),
]


@pytest.mark.parametrize(("field", "variable", "value", "text"), REFUSED, ids=[f"{r[0]}={r[2]!r}" for r in REFUSED])
def test_constructor_and_environment_refuse_alike(field: str, variable: str, value: object, text: str) -> None:
    with pytest.raises(ConfigurationError) as constructed:
        Settings(database_url="sqlite:///:memory:", **{field: value})
    assert f"{field}={value!r}" in str(constructed.value)
    with pytest.raises(ConfigurationError) as read:
        Settings.from_env({variable: text})
    assert f"{variable}={text!r}" in str(read.value)
    assert str(read.value).split(" ", 1)[1] == str(constructed.value).split(" ", 1)[1], "one rule, one wording"


def test_the_reported_constructor_call_is_refused() -> None:
    # Each of these alone is refused (REFUSED above); together the first field checked is named.
    with pytest.raises(
        ConfigurationError, match=r"^(connect_timeout|pool_timeout|retry_max_seconds|sqlite_busy|pool_recycle)"
    ):
        Settings(
            database_url="sqlite:///x.db",
            connect_timeout=-1,
            pool_timeout=float("nan"),
            retry_max_seconds=0,
            sqlite_busy_timeout_ms=-5,
            pool_recycle=-9,
        )


BAD_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "system key not text": ({"system_api_key": 1234567}, "system_api_key=<int, hidden>"),
    "system key empty": ({"system_api_key": ""}, "system_api_key=<str, hidden>"),
    "chroma not ChromaSettings": ({"chroma": {"port": 8000}}, "chroma must be a ChromaSettings, not dict"),
    "pinecone not PineconeSettings": ({"pinecone": None}, "pinecone must be a PineconeSettings, not NoneType"),
    "database_url not text": ({"database_url": 5432}, "database_url must be a URL string, not int"),
}


@pytest.mark.parametrize(("changes", "expected"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_constructor_checks_the_other_fields(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(**{"database_url": "sqlite:///:memory:", **changes})
    assert expected in str(caught.value)
    assert "1234567" not in str(caught.value), "a secret's value is never shown"


def test_nested_settings_check_their_fields() -> None:
    for port in (0, 65536, True, "8000"):
        with pytest.raises(ConfigurationError, match=f"port={port!r} must be a whole number from 1 to 65535"):
            ChromaSettings(port=port)  # type: ignore[arg-type]
    for text in ("0", "70000", "http"):
        with pytest.raises(ConfigurationError, match=f"DBCORE_CHROMA_PORT={text!r}"):
            Settings.from_env({"DBCORE_CHROMA_PORT": text})
    with pytest.raises(ConfigurationError, match="api_key=<int, hidden>"):
        PineconeSettings(api_key=12345)  # type: ignore[arg-type]
    assert Settings.from_env({"DBCORE_CHROMA_PORT": " 9000 "}).chroma.port == 9000


def test_values_at_the_limits_are_accepted() -> None:
    settings = Settings(
        database_url="sqlite:///:memory:",
        connect_timeout=2,
        pool_timeout=0.5,
        pool_recycle=-1,
        sqlite_busy_timeout_ms=0,
        max_overflow=-1,
        retry_attempts=1,
        vector_dims=16000,
        system_api_key="k",
    )
    assert (settings.connect_timeout, settings.pool_recycle, settings.retry_attempts) == (2, -1, 1)
    read = Settings.from_env({"DBCORE_RETRY_ATTEMPTS": " ", "DBCORE_POOL_RECYCLE": "-1", "DBCORE_ECHO": "ON"})
    assert (read.retry_attempts, read.pool_recycle, read.echo) == (None, -1, True)
    assert Settings.from_env({"DBCORE_VECTOR_BACKEND": " Chroma "}).vector_backend == "chroma"
    assert Settings.from_env({}).vector_push_on_commit is True
    assert Settings.from_env({"DBCORE_VECTOR_PUSH_ON_COMMIT": "off"}).vector_push_on_commit is False
    assert Settings.from_env({}).vector_ann is False
    assert Settings.from_env({"DBCORE_VECTOR_ANN": "on"}).vector_ann is True


def test_unknown_vector_backend_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"DBCORE_VECTOR_BACKEND": "nonsense"})
    assert str(caught.value) == "DBCORE_VECTOR_BACKEND='nonsense' is unknown; use one of integrated, chroma, pinecone"


def test_replace_checks_again() -> None:
    settings = Settings(database_url="sqlite:///:memory:")
    with pytest.raises(ConfigurationError, match="retry_max_seconds=0"):
        settings.replace(retry_max_seconds=0)


# Passwords with characters a regular expression over the text would stop at. Every one holds
# MARKER, so neither the secret nor any encoding of it may show.
MARKER = "s3cr3t"
SECRETS = [
    f"{MARKER}PW x",
    f"{MARKER}#frag",
    f"{MARKER}/slash",
    f"{MARKER}?q=1",
    f"{MARKER}ñé€",
    f"{MARKER} x/y?z#w:@"[:-1],
]


@pytest.mark.parametrize("secret", SECRETS)
def test_password_with_special_characters_never_shown(secret: str) -> None:
    settings = Settings.from_env({"POSTGRES_URL": f"postgresql+psycopg://u:{secret}@127.0.0.1:1/x"})
    assert settings.url.password == secret, "still usable for connecting"
    for shown in (repr(settings), str(settings), settings.masked_url, mask_url(settings.database_url)):
        assert MARKER not in shown
    assert settings.masked_url == "postgresql+psycopg://u:***@127.0.0.1:1/x"


def _errors_for(secret: str) -> dict[str, dict[str, str]]:
    url = f"postgresql+psycopg://u:{secret}@127.0.0.1:1/x"
    return {
        "unparseable port": {"DATABASE_URL": f"postgresql+psycopg://u:{secret}@h:notaport/x"},
        "alias not postgres": {"POSTGRES_URL": f"mysql+pymysql://u:{secret}@h/db"},
        "both set and differ": {"DATABASE_URL": url, "POSTGRES_URL": url.replace("/x", "/y")},
        "differ in password only": {"DATABASE_URL": url, "POSTGRES_URL": url.replace(secret, secret + "2")},
        "no database": {"DATABASE_URL": f"postgresql+psycopg://u:{secret}@127.0.0.1:1"},
        "port out of range": {"DATABASE_URL": f"postgresql+psycopg://u:{secret}@127.0.0.1:70000/x"},
        "mssql without driver": {"DATABASE_URL": f"mssql+pyodbc://sa:{secret}@h/db"},
        "unknown dialect": {"DATABASE_URL": f"oracle://u:{secret}@h/db"},
        "unescaped at sign": {"DATABASE_URL": f"postgresql+psycopg://u:a@{secret}@127.0.0.1:1/x"},
    }


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("case", _errors_for("x").keys())
def test_password_with_special_characters_never_in_errors(secret: str, case: str) -> None:
    environ = _errors_for(secret)[case]
    with pytest.raises(ConfigurationError) as from_env:
        Settings.from_env(environ)
    errors = [from_env.value]
    if case not in ("alias not postgres", "both set and differ", "differ in password only"):  # the URL itself is bad
        with pytest.raises(ConfigurationError) as constructed:
            Settings(database_url=environ["DATABASE_URL"])
        errors.append(constructed.value)
    for error in errors:
        assert MARKER not in str(error)
        assert MARKER not in repr(error)
        assert "***" in str(error)


def test_unparseable_url_hides_everything_before_the_host() -> None:
    assert mask_url("postgresql+psycopg://u:s3cr3t@h:notaport/x") == "postgresql+psycopg://***@h:notaport/x"
    assert mask_url("postgresql+psycopg://u:a@s3cr3tPW@127.0.0.1:1/x") == "postgresql+psycopg://***@127.0.0.1:1/x"
    assert mask_url("u:s3cr3t x@host") == "***@host"
    assert mask_url("definitely not a url") == "definitely not a url"


def test_unescaped_at_sign_in_password_is_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"POSTGRES_URL": "postgresql+psycopg://u:a@s3cr3tPW@127.0.0.1:1/x"})
    message = str(caught.value)
    assert "%40" in message and "percent-encode" in message
    assert "s3cr3tPW" not in message
    escaped = Settings.from_env({"POSTGRES_URL": "postgresql+psycopg://u:a%40s3cr3tPW@127.0.0.1:1/x"})
    assert (escaped.url.password, escaped.url.host) == ("a@s3cr3tPW", "127.0.0.1")
    info = dbcore.connection_info(escaped.replace(connect_timeout=1))
    for shown in (repr(escaped), escaped.masked_url, repr(info), info.url):
        assert "s3cr3tPW" not in shown
