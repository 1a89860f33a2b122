"""PK_TYPE, SqlEnum, Vector and UTCDateTime against every live dialect: storage, round trips, refusals."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import IntEnum
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import dbcore
from dbcore.types import PK_TYPE, SqlEnum, UTCDateTime, Vector, new_uuid, utcnow


class MFAMethodType(IntEnum):
    TOTP = 1
    EMAIL = 2
    SMS = 3


class Wide(IntEnum):
    LOW = 1
    HIGH = 300


class Signed(IntEnum):
    DOWN = -5
    ZERO = 0
    UP = 5


class Byte(IntEnum):
    NONE = 0
    MOST = 200


class Big(IntEnum):
    ONE = 1
    MANY = 100_000


metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", PK_TYPE, primary_key=True, default=new_uuid),
    sa.Column("method_type", SqlEnum(MFAMethodType), nullable=False),
    sa.Column("wide", SqlEnum(Wide)),
    sa.Column("signed", SqlEnum(Signed)),
    sa.Column("byte", SqlEnum(Byte)),
    sa.Column("big", SqlEnum(Big)),
    sa.Column("small_vec", Vector(4)),
    sa.Column("embedding", Vector(384)),
    sa.Column("created_at", UTCDateTime, default=utcnow),
)

# The same table with plain types, to store values the custom types would refuse.
raw_metadata = sa.MetaData()
raw_things = sa.Table(
    "things",
    raw_metadata,
    sa.Column("id", PK_TYPE, primary_key=True),
    sa.Column("method_type", sa.Integer),
    sa.Column("small_vec", sa.LargeBinary),
)
sqlite_raw_ids = sa.Table("things", sa.MetaData(), sa.Column("id", sa.Text), sa.Column("method_type", sa.Integer))


def count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(things)).scalar_one()


def column_types(engine: Engine, dialect: str) -> dict[str, str]:
    """Column name -> type as the live catalog reports it, lower case."""
    with engine.connect() as connection:
        if dialect == "sqlite":
            rows = connection.exec_driver_sql("PRAGMA table_info(things)").all()
            return {row[1]: row[2].lower() for row in rows}
        if dialect.startswith("postgresql"):
            rows = connection.execute(
                sa.text("SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = 'things'")
            ).all()
        else:
            rows = connection.execute(
                sa.text(
                    "SELECT column_name, column_type FROM information_schema.columns "
                    "WHERE table_schema = DATABASE() AND table_name = 'things'"
                )
            ).all()
    return {str(name): str(kind).lower() for name, kind in rows}


@pytest.fixture
def table(engine: Engine) -> Engine:
    metadata.create_all(engine)
    return engine


def valid_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "method_type": MFAMethodType.TOTP,
        "small_vec": [0.5, -1.0, 2.0, 3.25],
        "created_at": utcnow(),
    }
    row.update(overrides)
    return row


# --- storage ------------------------------------------------------------------

EXPECTED_TYPES = {
    "sqlite": {
        "id": "text",
        "method_type": "smallint",
        "wide": "smallint",
        "signed": "smallint",
        "byte": "smallint",
        "big": "integer",
        "small_vec": "blob",
        "embedding": "blob",
    },
    "postgresql": {
        "id": "uuid",
        "method_type": "int2",
        "wide": "int2",
        "signed": "int2",
        "byte": "int2",
        "big": "int4",
        "small_vec": "vector",
        "embedding": "vector",
        "created_at": "timestamptz",
    },
    "postgresql_novector": {
        "id": "uuid",
        "method_type": "int2",
        "big": "int4",
        "small_vec": "bytea",
        "embedding": "bytea",
        "created_at": "timestamptz",
    },
    "mariadb": {
        "id": "uuid",
        "method_type": "tinyint(",
        "wide": "smallint(",
        "signed": "tinyint(",
        "byte": "tinyint(3) unsigned",
        "big": "int(",
        "small_vec": "longblob",
        "embedding": "longblob",
        "created_at": "datetime(6)",
    },
}


def test_live_catalog_shows_the_chosen_storage(table: Engine, dialect: str) -> None:
    found = column_types(table, dialect)
    for column, expected in EXPECTED_TYPES[dialect].items():
        assert found[column].startswith(expected), (column, found[column])
    if dialect == "mariadb":
        assert "unsigned" not in found["signed"] and "unsigned" not in found["method_type"]


# --- round trips ----------------------------------------------------------------


def test_uuid_round_trips_from_uuid_and_strings(table: Engine) -> None:
    given = [uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), new_uuid()]
    forms: list[Any] = [given[0], str(given[1]), str(given[2]).upper(), given[3]]
    with table.begin() as connection:
        for form in forms:
            connection.execute(things.insert(), valid_row(id=form))
    with table.connect() as connection:
        for expected, form in zip(given, forms, strict=True):
            found = connection.execute(sa.select(things.c.id).where(things.c.id == form)).scalar_one()
            assert isinstance(found, uuid.UUID)
            assert found == expected


def test_default_primary_key_is_generated(table: Engine) -> None:
    with table.begin() as connection:
        connection.execute(things.insert(), {"method_type": 2, "small_vec": None, "created_at": utcnow()})
    with table.connect() as connection:
        row = connection.execute(sa.select(things.c.id, things.c.method_type, things.c.created_at)).one()
    assert isinstance(row.id, uuid.UUID)
    assert row.method_type is MFAMethodType.EMAIL
    assert row.created_at.tzinfo is dt.timezone.utc


def test_enums_round_trip_as_members(table: Engine) -> None:
    rows = [
        valid_row(method_type=MFAMethodType.SMS, wide=Wide.HIGH, signed=Signed.DOWN, byte=Byte.MOST, big=Big.MANY),
        valid_row(method_type=1, wide=1, signed=0, byte=0, big=1),
    ]
    with table.begin() as connection:
        connection.execute(things.insert(), rows)
    columns = [things.c.id, things.c.method_type, things.c.wide, things.c.signed, things.c.byte, things.c.big]
    with table.connect() as connection:
        found = {row.id: row for row in connection.execute(sa.select(*columns))}
        assert (
            connection.execute(
                sa.select(sa.func.count()).select_from(things).where(things.c.signed == Signed.DOWN)
            ).scalar_one()
            == 1
        )
    first, second = found[rows[0]["id"]], found[rows[1]["id"]]
    assert (first.method_type, first.wide, first.signed, first.byte, first.big) == (
        MFAMethodType.SMS,
        Wide.HIGH,
        Signed.DOWN,
        Byte.MOST,
        Big.MANY,
    )
    assert first.method_type is MFAMethodType.SMS and first.signed is Signed.DOWN
    assert second.method_type is MFAMethodType.TOTP and second.byte is Byte.NONE and second.big is Big.ONE


def test_vectors_round_trip_bit_exact(table: Engine) -> None:
    rng = np.random.default_rng(7)
    big = (rng.standard_normal(384) * 10).astype(np.float32)
    small = np.array([np.finfo(np.float32).max, -1.5e-38, 0.1, -0.0], dtype=np.float32)
    with table.begin() as connection:
        connection.execute(things.insert(), valid_row(id=uuid.UUID(int=1), small_vec=small, embedding=big))
        connection.execute(things.insert(), valid_row(id=uuid.UUID(int=2), small_vec=small.reshape(2, 2)))
        connection.execute(things.insert(), valid_row(id=uuid.UUID(int=3), small_vec=small.reshape(1, 4)))
        connection.execute(things.insert(), valid_row(id=uuid.UUID(int=4), small_vec=(1, 2, 3, 4)))
    with table.connect() as connection:
        rows = {
            row.id: row for row in connection.execute(sa.select(things.c.id, things.c.small_vec, things.c.embedding))
        }
    assert len(rows) == 4
    for key in (1, 2, 3):
        got = rows[uuid.UUID(int=key)].small_vec
        assert got.dtype == np.float32 and got.ndim == 1
        assert np.array_equal(got, small)
        assert got.tobytes() == small.tobytes()  # bit-exact, including the sign of -0.0
    embedding = rows[uuid.UUID(int=1)].embedding
    assert embedding.dtype == np.float32 and embedding.shape == (384,)
    assert np.array_equal(embedding, big)
    assert np.array_equal(rows[uuid.UUID(int=4)].small_vec, np.array([1, 2, 3, 4], dtype=np.float32))
    assert rows[uuid.UUID(int=4)].embedding is None


def test_vector_storage_is_compact_or_native(table: Engine, dialect: str) -> None:
    with table.begin() as connection:
        connection.execute(things.insert(), valid_row(embedding=np.ones(384, dtype=np.float32)))
    with table.connect() as connection:
        if dialect == "sqlite":
            stored = connection.execute(sa.text("SELECT length(embedding) FROM things")).scalar_one()
            assert stored == 4 * 384 <= 1.1 * 1536
        elif dialect == "postgresql_novector":
            stored = connection.execute(sa.text("SELECT octet_length(embedding) FROM things")).scalar_one()
            assert stored == 4 * 384
        elif dialect == "mariadb":
            stored = connection.execute(sa.text("SELECT length(embedding) FROM things")).scalar_one()
            assert stored == 4 * 384
        else:
            assert connection.execute(sa.text("SELECT vector_dims(embedding) FROM things")).scalar_one() == 384


def test_cosine_distance_in_sql_only_with_pgvector(table: Engine, dialect: str) -> None:
    with table.begin() as connection:
        connection.execute(things.insert(), valid_row(small_vec=[1, 0, 0, 0]))
    query = sa.select(things.c.small_vec.cosine_distance([0, 1, 0, 0]))
    with table.connect() as connection:
        if dialect == "postgresql":
            assert connection.execute(query).scalar_one() == pytest.approx(1.0)
        else:
            with pytest.raises(sa.exc.CompileError, match="pgvector"):
                connection.execute(query)


def test_utc_datetime_returns_aware_utc(table: Engine) -> None:
    plus_five = dt.datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    with table.begin() as connection:
        connection.execute(things.insert(), valid_row(id=uuid.UUID(int=1), created_at=plus_five))
    with table.connect() as connection:
        found = connection.execute(sa.select(things.c.created_at)).scalar_one()
        later = connection.execute(
            sa.select(sa.func.count()).select_from(things).where(things.c.created_at >= plus_five)
        ).scalar_one()
    assert found.tzinfo is dt.timezone.utc
    assert found == plus_five
    assert found == dt.datetime(2024, 3, 1, 7, 30, 15, 123456, tzinfo=dt.timezone.utc)
    assert later == 1


def test_utcnow_is_aware_utc() -> None:
    now = utcnow()
    assert now.tzinfo is dt.timezone.utc


# --- refusals -------------------------------------------------------------------

GOOD_UUID = "123e4567-e89b-12d3-a456-426614174000"

GOOD_VALUES: dict[str, Any] = {
    "id": uuid.UUID(GOOD_UUID.upper()),
    "method_type": MFAMethodType.EMAIL,
    "byte": Byte.MOST,
    "small_vec": [1.0, 2.0, 3.0, 4.0],
    "embedding": np.zeros(384, dtype=np.float32),
    "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
}

BAD_VALUES: list[tuple[str, str, Any, type[Exception]]] = [
    ("uuid-word", "id", "not-a-uuid", dbcore.ValidationError),
    ("uuid-no-hyphens", "id", GOOD_UUID.replace("-", ""), dbcore.ValidationError),
    ("uuid-35-chars", "id", GOOD_UUID[:-1], dbcore.ValidationError),
    ("uuid-37-chars", "id", GOOD_UUID + "0", dbcore.ValidationError),
    ("uuid-non-hex", "id", "g" + GOOD_UUID[1:], dbcore.ValidationError),
    ("uuid-braces", "id", "{" + GOOD_UUID + "}", dbcore.ValidationError),
    ("uuid-trailing-newline", "id", GOOD_UUID + "\n", dbcore.ValidationError),
    ("uuid-int", "id", 12345, dbcore.ValidationError),
    ("uuid-bytes", "id", uuid.UUID(GOOD_UUID).bytes, dbcore.ValidationError),
    ("uuid-float", "id", 3.5, dbcore.ValidationError),
    ("enum-unknown-int", "method_type", 4, dbcore.ValidationError),
    ("enum-name-string", "method_type", "TOTP", dbcore.ValidationError),
    ("enum-digit-string", "method_type", "1", dbcore.ValidationError),
    ("enum-bool", "method_type", True, dbcore.ValidationError),
    ("enum-float", "method_type", 1.0, dbcore.ValidationError),
    ("enum-other-enum-member", "method_type", Wide.LOW, dbcore.ValidationError),
    ("enum-out-of-range", "byte", 256, dbcore.ValidationError),
    ("vector-too-short", "small_vec", [1.0, 2.0, 3.0], dbcore.DimensionMismatchError),
    ("vector-too-long", "small_vec", [1.0, 2.0, 3.0, 4.0, 5.0], dbcore.DimensionMismatchError),
    ("vector-empty", "small_vec", [], dbcore.DimensionMismatchError),
    ("vector-wrong-model", "embedding", np.zeros(1536, dtype=np.float32), dbcore.DimensionMismatchError),
    ("vector-nan", "small_vec", [1.0, float("nan"), 3.0, 4.0], dbcore.ValidationError),
    ("vector-inf", "small_vec", [1.0, float("inf"), 3.0, 4.0], dbcore.ValidationError),
    ("vector-minus-inf", "small_vec", np.array([1, 2, 3, -np.inf]), dbcore.ValidationError),
    ("vector-float32-overflow", "small_vec", [1.0, 1e39, 3.0, 4.0], dbcore.ValidationError),
    ("vector-strings", "small_vec", ["a", "b", "c", "d"], dbcore.ValidationError),
    ("vector-numeric-strings", "small_vec", ["1", "2", "3", "4"], dbcore.ValidationError),
    ("vector-one-string", "small_vec", "1,2,3,4", dbcore.ValidationError),
    ("vector-bytes", "small_vec", b"\x00" * 16, dbcore.ValidationError),
    ("vector-ragged", "small_vec", [[1.0, 2.0], [3.0]], dbcore.ValidationError),
    ("vector-none-inside", "small_vec", [1.0, None, 3.0, 4.0], dbcore.ValidationError),
    ("vector-object-dtype", "small_vec", np.array([1.0, 2.0, 3.0, 4.0], dtype=object), dbcore.ValidationError),
    ("vector-complex", "small_vec", np.array([1, 2, 3, 4], dtype=complex), dbcore.ValidationError),
    ("vector-bool", "small_vec", np.array([True, False, True, False]), dbcore.ValidationError),
    ("vector-scalar", "small_vec", 4.0, dbcore.ValidationError),
    ("vector-dict", "small_vec", {"a": 1.0}, dbcore.ValidationError),
    ("datetime-naive", "created_at", dt.datetime(2024, 1, 1, 12, 0), dbcore.ValidationError),
    ("datetime-date", "created_at", dt.date(2024, 1, 1), dbcore.ValidationError),
    ("datetime-string", "created_at", "2024-01-01T12:00:00+00:00", dbcore.ValidationError),
    ("datetime-epoch", "created_at", 1_700_000_000, dbcore.ValidationError),
]


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [pytest.param(column, value, error, id=name) for name, column, value, error in BAD_VALUES],
)
def test_bad_values_are_refused_before_sql(table: Engine, column: str, value: Any, error: type[Exception]) -> None:
    with table.begin() as connection:
        connection.execute(things.insert(), valid_row())
    before = count(table)
    with pytest.raises(error):
        with table.begin() as connection:
            # Both rows carry the column: an executemany takes its columns from the first row.
            first = valid_row(**{column: GOOD_VALUES[column]})
            connection.execute(things.insert(), [first, valid_row(**{column: value})])
    assert count(table) == before == 1


def test_bad_value_in_orm_flush_is_refused(table: Engine) -> None:
    class Base(DeclarativeBase):
        metadata = metadata

    class Thing(Base):
        __table__ = things

    with pytest.raises(dbcore.ValidationError):
        with Session(table) as session, session.begin():
            session.add(Thing(method_type=MFAMethodType.SMS, small_vec=[1, 2, 3, 4], created_at=utcnow()))
            session.add(
                Thing(method_type=MFAMethodType.SMS, small_vec=[1, 2, 3, 4], created_at=dt.datetime(2024, 1, 1))
            )
    assert count(table) == 0


def test_orm_mixin_columns_name_their_own_table() -> None:
    class Base(DeclarativeBase):
        pass

    class EmbeddingMixin:
        embedding: Mapped[Any] = mapped_column(Vector(3), nullable=True)

    class Memory(EmbeddingMixin, Base):
        __tablename__ = "memories"
        id: Mapped[uuid.UUID] = mapped_column(PK_TYPE, primary_key=True, default=new_uuid)

    class Passage(EmbeddingMixin, Base):
        __tablename__ = "passages"
        id: Mapped[uuid.UUID] = mapped_column(PK_TYPE, primary_key=True, default=new_uuid)

    memory_type = Memory.__table__.c.embedding.type
    passage_type = Passage.__table__.c.embedding.type
    assert isinstance(memory_type, Vector) and isinstance(passage_type, Vector)
    with pytest.raises(dbcore.DimensionMismatchError, match=r"memories\.embedding"):
        memory_type.to_float32([1.0])
    with pytest.raises(dbcore.DimensionMismatchError, match=r"passages\.embedding"):
        passage_type.to_float32([1.0])


def test_shared_type_instance_names_each_column() -> None:
    shared = Vector(2)
    table = sa.Table("pairs", sa.MetaData(), sa.Column("a", shared), sa.Column("b", shared))
    with pytest.raises(dbcore.DimensionMismatchError, match=r"pairs\.a"):
        table.c.a.type.to_float32([1.0])
    with pytest.raises(dbcore.DimensionMismatchError, match=r"pairs\.b"):
        table.c.b.type.to_float32([1.0])


def test_dimension_mismatch_names_table_column_expected_and_got(table: Engine) -> None:
    with pytest.raises(dbcore.DimensionMismatchError) as caught:
        with table.begin() as connection:
            connection.execute(things.insert(), valid_row(embedding=np.zeros(1536)))
    message = str(caught.value)
    assert "things.embedding" in message
    assert "Vector(384)" in message and "1536" in message
    assert "DBCORE_VECTOR_DIMS" not in message  # only memory_embeddings.embedding follows that setting


def test_enum_error_names_enum_value_and_members(table: Engine) -> None:
    with pytest.raises(dbcore.ValidationError) as caught:
        with table.begin() as connection:
            connection.execute(things.insert(), valid_row(method_type=9))
    message = str(caught.value)
    assert "things.method_type" in message and "MFAMethodType" in message and "9" in message
    assert "TOTP=1" in message and "SMS=3" in message


# --- corrupt stored data --------------------------------------------------------


def test_unknown_enum_value_in_database_is_refused_on_read(table: Engine) -> None:
    with table.begin() as connection:
        connection.execute(raw_things.insert(), {"id": uuid.uuid4(), "method_type": 99})
    with table.connect() as connection:
        with pytest.raises(dbcore.ValidationError, match="MFAMethodType"):
            connection.execute(sa.select(things.c.method_type)).all()


def test_wrong_length_vector_bytes_are_refused_on_read(table: Engine, dialect: str) -> None:
    if dialect == "postgresql":
        pytest.skip("a pgvector vector(4) column cannot hold a value of another length")
    with table.begin() as connection:
        connection.execute(raw_things.insert(), {"id": uuid.uuid4(), "method_type": 1, "small_vec": b"\x00" * 15})
    with table.connect() as connection:
        with pytest.raises(dbcore.ValidationError, match="corrupt"):
            connection.execute(sa.select(things.c.small_vec)).all()


def test_malformed_uuid_text_is_refused_on_read(table: Engine, dialect: str) -> None:
    if dialect != "sqlite":
        pytest.skip("native UUID columns cannot hold malformed values")
    with table.begin() as connection:
        connection.execute(sqlite_raw_ids.insert(), {"id": "not-a-uuid", "method_type": 1})
    with table.connect() as connection:
        with pytest.raises(dbcore.ValidationError, match="not a UUID"):
            connection.execute(sa.select(things.c.id)).all()


# --- construction ---------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, -1, 16001, 2.5, True, "384"])
def test_vector_dimension_is_checked(dim: Any) -> None:
    with pytest.raises(dbcore.ValidationError, match="Vector dimension"):
        Vector(dim)


def test_sql_enum_marks_itself_and_keeps_its_class() -> None:
    column = sa.Column("method_type", SqlEnum(MFAMethodType), nullable=False)
    assert column.type.is_integer_enum is True
    assert column.type.enum_class is MFAMethodType


def test_sql_enum_refuses_non_integer_enums() -> None:
    import enum

    class Colour(enum.Enum):
        RED = "red"

    with pytest.raises(dbcore.ValidationError, match="IntEnum"):
        SqlEnum(Colour)


def test_dimension_hint_names_dbcore_vector_dims_only_for_dbcore_embeddings() -> None:
    """DBCORE_VECTOR_DIMS sets memory_embeddings.embedding only; a user's Vector(8) column gets no such advice."""
    from dbcore.types import vector_values

    with pytest.raises(dbcore.DimensionMismatchError) as user_column:
        vector_values([1.0, 2.0], 8, where="notes.embedding")
    assert "DBCORE_VECTOR_DIMS" not in str(user_column.value) and "notes.embedding" in str(user_column.value)
    with pytest.raises(dbcore.DimensionMismatchError, match="DBCORE_VECTOR_DIMS"):
        vector_values([1.0, 2.0], 8, where="memory_embeddings.embedding")
