"""The plugin's models, on a base of their own (dbcore.make_base), referencing dbcore's agents."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

import dbcore
from dbcore import Agent, BaseMixin

JournalBase = dbcore.make_base("JournalBase")


class JournalKind(JournalBase, BaseMixin):
    """What a journal entry records; seeded."""

    __tablename__ = "journal_kinds"

    name: Mapped[str] = mapped_column(sa.Unicode(50), unique=True, comment="Short name of the kind.")

    seed_list = [
        {"id": "FFFFFFFF-FFFF-FFFF-0001-FFFFFFFFFFFF", "name": "reflection"},
        {"id": "FFFFFFFF-FFFF-FFFF-0002-FFFFFFFFFFFF", "name": "plan"},
    ]


class JournalEntry(JournalBase, BaseMixin):
    """One entry an agent writes. A plain key to dbcore's agents (no relationship added to Agent)."""

    __tablename__ = "journal_entries"

    agent_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey(Agent.__table__.c.id, ondelete="CASCADE"), index=True, comment="The agent who wrote it."
    )
    kind_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey(JournalKind.id), comment="What the entry records.")
    text: Mapped[str] = mapped_column(sa.Unicode(500), comment="The entry.")
