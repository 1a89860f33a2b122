"""``column.regexp_match()`` returns the same rows on every dialect; a bad pattern is a DataError."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import dbcore

metadata = sa.MetaData()
words = sa.Table(
    "words",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("word", sa.String(40), nullable=True),
)
WORDS = ["agent-007", "agent-42", "room_1", "memory", "embedding", "entity 9", "agentless", None]


@pytest.fixture
def filled(engine: Engine) -> Engine:
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(words.insert(), [{"id": i, "word": w} for i, w in enumerate(WORDS)])
    return engine


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^agent-[0-9]+$", {"agent-007", "agent-42"}),
        (r"[0-9]", {"agent-007", "agent-42", "room_1", "entity 9"}),
        (r"ing$", {"embedding"}),
        (r"^(room|entity)", {"room_1", "entity 9"}),
        (r"zzz", set()),
    ],
)
def test_regexp_match_same_rows_everywhere(filled: Engine, pattern: str, expected: set[str]) -> None:
    with filled.connect() as connection:
        found = set(connection.execute(sa.select(words.c.word).where(words.c.word.regexp_match(pattern))).scalars())
    assert found == expected


def test_invalid_pattern_is_a_clear_data_error(filled: Engine) -> None:
    with pytest.raises(dbcore.DataError) as caught:
        with filled.connect() as connection:
            connection.execute(sa.select(words.c.word).where(words.c.word.regexp_match("agent-(")))
    assert caught.value.orig is not None
    with filled.connect() as connection:  # the engine keeps working afterwards
        assert connection.execute(sa.select(sa.func.count()).select_from(words)).scalar_one() == len(WORDS)


def test_sqlite_regexp_message_names_the_pattern(memory_engine: Engine) -> None:
    with pytest.raises(dbcore.DataError, match=r"invalid regular expression 'a\('"):
        with memory_engine.connect() as connection:
            connection.exec_driver_sql("SELECT 'abc' REGEXP 'a('")
