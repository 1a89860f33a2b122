"""The downstream project's models: on their own declarative base, referencing dbcore's tables.

``DownstreamBase`` comes from :func:`dbcore.make_base`: dbcore's naming convention
and type map, but its own ``MetaData``, so importing this module never adds a
table to ``dbcore.Base.metadata`` (dbcore's drift checks stay exact).

A key to a dbcore table names the *column object* (``sa.ForeignKey(Agent.id)``),
not the string ``"agents.id"``: a string is looked up in the referencing table's
own metadata, where ``agents`` does not exist. The relationship names the class
(``relationship(Agent, ...)``), so it resolves across the two registries, and its
backref adds ``Agent.notes``.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

import dbcore
from dbcore import Agent, BaseMixin, UpdateMixin

__all__ = ["DownstreamBase", "Note"]

DownstreamBase = dbcore.make_base("DownstreamBase")


class Note(DownstreamBase, BaseMixin, UpdateMixin):
    """A note an agent keeps."""

    __tablename__ = "notes"

    agent_id: Mapped[uuid.UUID] = mapped_column(dbcore.PK_TYPE, sa.ForeignKey(Agent.id), index=True)
    title: Mapped[str] = mapped_column(sa.Unicode(200), comment="Short title of the note.")
    body: Mapped[str] = mapped_column(sa.UnicodeText, default="", comment="Text of the note.")

    agent: Mapped[Agent] = relationship(Agent, backref=backref("notes"))
