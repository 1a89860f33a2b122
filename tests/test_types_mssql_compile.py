"""DDL for dialects without a server here: SQL Server, MariaDB by version, MySQL, offline PostgreSQL."""

from __future__ import annotations

from enum import IntEnum

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, postgresql
from sqlalchemy.schema import CreateTable

from dbcore.types import PK_TYPE, SqlEnum, UTCDateTime, Vector

pytestmark = pytest.mark.compile_only


class MFAMethodType(IntEnum):
    TOTP = 1
    EMAIL = 2
    SMS = 3


class Signed(IntEnum):
    DOWN = -5
    UP = 5


class Wide(IntEnum):
    LOW = 1
    HIGH = 300


class Big(IntEnum):
    ONE = 1
    HUGE = 2**40


table = sa.Table(
    "things",
    sa.MetaData(),
    sa.Column("id", PK_TYPE, primary_key=True),
    sa.Column("method_type", SqlEnum(MFAMethodType), nullable=False),
    sa.Column("signed", SqlEnum(Signed)),
    sa.Column("wide", SqlEnum(Wide)),
    sa.Column("big", SqlEnum(Big)),
    sa.Column("embedding", Vector(384)),
    sa.Column("created_at", UTCDateTime),
)


def ddl(dialect: sa.Dialect) -> str:
    return str(CreateTable(table).compile(dialect=dialect))


def mysql_dialect(version: tuple[int, ...], *, mariadb: bool) -> sa.Dialect:
    dialect = mysql.dialect()
    dialect.is_mariadb = mariadb
    dialect.server_version_info = version
    return dialect


def test_mssql_ddl() -> None:
    text = ddl(mssql.dialect())
    assert "id UNIQUEIDENTIFIER NOT NULL" in text
    assert "method_type TINYINT NOT NULL" in text
    assert "signed SMALLINT" in text  # SQL Server's TINYINT has no negative values
    assert "wide SMALLINT" in text
    assert "big BIGINT" in text
    assert "embedding VARBINARY(max)" in text
    assert "created_at DATETIME2(6)" in text


def test_mariadb_10_11_ddl_uses_native_uuid() -> None:
    text = ddl(mysql_dialect((10, 11, 0), mariadb=True))
    assert "id UUID NOT NULL" in text
    assert "method_type TINYINT NOT NULL" in text
    assert "signed TINYINT" in text and "TINYINT UNSIGNED" not in text
    assert "wide SMALLINT" in text
    assert "big BIGINT" in text
    assert "embedding LONGBLOB" in text
    assert "created_at DATETIME(6)" in text


@pytest.mark.parametrize(
    ("version", "mariadb"),
    [pytest.param((10, 6, 0), True, id="mariadb-10.6"), pytest.param((8, 0, 36), False, id="mysql-8")],
)
def test_mysql_and_old_mariadb_store_uuid_as_char36(version: tuple[int, ...], mariadb: bool) -> None:
    text = ddl(mysql_dialect(version, mariadb=mariadb))
    assert "id CHAR(36) NOT NULL" in text


def test_byte_sized_unsigned_enum_on_mariadb() -> None:
    class Byte(IntEnum):
        NONE = 0
        MOST = 200

    unsigned = sa.Table("bytes", sa.MetaData(), sa.Column("b", SqlEnum(Byte)))
    text = str(CreateTable(unsigned).compile(dialect=mysql_dialect((10, 11, 0), mariadb=True)))
    assert "b TINYINT UNSIGNED" in text


def test_postgresql_offline_ddl_assumes_pgvector() -> None:
    text = ddl(postgresql.dialect())
    assert "id UUID NOT NULL" in text
    assert "method_type SMALLINT NOT NULL" in text
    assert "embedding VECTOR(384)" in text
    assert "created_at TIMESTAMP WITH TIME ZONE" in text


def test_postgresql_without_pgvector_uses_bytea() -> None:
    dialect = postgresql.dialect()
    dialect.dbcore_pgvector = False  # what dbcore's first-connect probe records
    assert "embedding BYTEA" in ddl(dialect)


def test_vector_distance_refuses_to_compile_without_pgvector() -> None:
    query = sa.select(table.c.embedding.cosine_distance([0.0] * 384))
    assert "<=>" in str(query.compile(dialect=postgresql.dialect()))
    with pytest.raises(sa.exc.CompileError, match="pgvector"):
        query.compile(dialect=mysql_dialect((10, 11, 0), mariadb=True))
    with pytest.raises(sa.exc.CompileError, match="pgvector"):
        query.compile(dialect=mssql.dialect())
