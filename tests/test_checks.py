"""check_models / assert_models_ok: the relational rules, with precise messages."""

from __future__ import annotations

import enum
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dbcore.base import make_base
from dbcore.checks import assert_models_ok, check_models
from dbcore.errors import ValidationError
from dbcore.Mixins import BaseMixin, ParentMixin, SoftDeleteMixin, UpdateMixin
from dbcore.refs import ref_mixins
from dbcore.types import PK_TYPE, SqlEnum


class Kind(enum.IntEnum):
    FACT = 1
    MESSAGE = 2


def good_models() -> sa.MetaData:
    Good = make_base("Good")

    class Agent(Good, BaseMixin, UpdateMixin, ParentMixin):
        __tablename__ = "agents"
        name: Mapped[str] = mapped_column(sa.String(50), comment="Agent name.")

    AgentRef, _ = ref_mixins(Agent)

    class Memory(Good, BaseMixin, SoftDeleteMixin, AgentRef):
        __tablename__ = "memories"
        kind: Mapped[Kind] = mapped_column(SqlEnum(Kind), comment="What the memory holds.")

    class Link(Good):
        __tablename__ = "links"
        agent_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("agents.id"), primary_key=True)
        memory_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("memories.id"), primary_key=True)
        __table_args__ = (sa.Index("ix_links_memory", "memory_id"),)

    return Good.metadata


def test_correct_models_pass() -> None:
    metadata = good_models()
    assert check_models(metadata) == []
    assert_models_ok(metadata)


def test_missing_comment() -> None:
    Bad = make_base("Bad")

    class Room(Bad, BaseMixin):
        __tablename__ = "rooms"
        topic: Mapped[str] = mapped_column(sa.String(50))

    assert check_models(Bad.metadata) == ["rooms.topic: column has no comment, add comment=..."]


def test_unindexed_foreign_key() -> None:
    Bad = make_base("Bad")

    class Room(Bad, BaseMixin):
        __tablename__ = "rooms"

    class Message(Bad, BaseMixin):
        __tablename__ = "messages"
        room_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("rooms.id"))

    class Pin(Bad, BaseMixin):
        __tablename__ = "pins"
        room_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("rooms.id"))
        message_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("messages.id"))
        # message_id is second in the index: the index does not serve lookups by message_id alone.
        __table_args__ = (sa.UniqueConstraint("room_id", "message_id"),)

    assert check_models(Bad.metadata) == [
        "messages.room_id: foreign key has no index, add index=True",
        "pins.message_id: foreign key has no index, add index=True",
    ]


def test_primary_key_not_pk_type() -> None:
    Bad = make_base("Bad")

    class Counter(Bad):
        __tablename__ = "counters"
        id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
        ok_id: Mapped[uuid.UUID] = mapped_column(PK_TYPE, unique=True, comment="Not a key, has a comment.")

    assert check_models(Bad.metadata) == ["counters.id: primary key is Integer, use dbcore.PK_TYPE"]


def test_string_enum() -> None:
    Bad = make_base("Bad")

    class Memory(Bad, BaseMixin):
        __tablename__ = "memories"
        kind: Mapped[Kind] = mapped_column(sa.Enum(Kind), comment="What the memory holds.")

    assert check_models(Bad.metadata) == ["memories.kind: enum stored as VARCHAR, use dbcore.SqlEnum"]


def test_assert_lists_every_problem() -> None:
    Bad = make_base("Bad")

    class Room(Bad):
        __tablename__ = "rooms"
        id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
        topic: Mapped[str] = mapped_column(sa.String(50))
        mood: Mapped[Kind] = mapped_column(sa.Enum(Kind), comment="Mood.")

    with pytest.raises(ValidationError) as caught:
        assert_models_ok(Bad.metadata)
    message = str(caught.value)
    assert message.startswith("3 model problem(s):")
    for expected in (
        "rooms.id: primary key is String, use dbcore.PK_TYPE",
        "rooms.topic: column has no comment",
        "rooms.mood: enum stored as VARCHAR, use dbcore.SqlEnum",
    ):
        assert expected in message
