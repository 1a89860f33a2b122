"""Settings from the environment: defaults, aliases, and refusals with a clear ConfigurationError."""

from __future__ import annotations

from pathlib import Path

import pytest

import dbcore
from dbcore import ConfigurationError, Settings

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


def test_postgres_url_alias_and_default_driver() -> None:
    settings = Settings.from_env({"POSTGRES_URL": "postgres://agent:pw@db.internal:5433/agents"})
    assert settings.url.drivername == "postgresql+psycopg"
    assert settings.url.port == 5433
    same = Settings.from_env(
        {"DATABASE_URL": "postgresql://agent:pw@db.internal:5433/agents", "POSTGRES_URL": "postgresql://agent:pw@db.internal:5433/agents"}
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
