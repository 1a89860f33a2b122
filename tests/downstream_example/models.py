"""The downstream project's models: on their own declarative base, referencing dbcore's tables.

``DownstreamBase`` comes from :func:`dbcore.make_base`: dbcore's naming convention
and type map, but its own ``MetaData``, so importing this module never adds a
table to ``dbcore.Base.metadata`` (dbcore's drift checks stay exact).

A reference to a dbcore table comes from :func:`dbcore.ref_mixins` as it does on
one base: ``agent_id`` (a key to ``agents.id``, indexed, NOT NULL), ``Note.agent``
and the backref ``Agent.notes``. Across bases the key names the column object,
which resolves across the two ``MetaData``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

import dbcore
from dbcore import Agent, BaseMixin, UpdateMixin, ref_mixins

__all__ = ["DownstreamBase", "Note"]

DownstreamBase = dbcore.make_base("DownstreamBase")


if TYPE_CHECKING:
    import uuid

    class AgentRefMixin:
        agent_id: Mapped[uuid.UUID]
        agent: Mapped[Agent]
else:
    AgentRefMixin, _ = ref_mixins(Agent)


class Note(DownstreamBase, BaseMixin, AgentRefMixin, UpdateMixin):
    """A note an agent keeps."""

    __tablename__ = "notes"

    title: Mapped[str] = mapped_column(sa.Unicode(200), comment="Short title of the note.")
    body: Mapped[str] = mapped_column(sa.UnicodeText, default="", comment="Text of the note.")
