"""Downstream models written the way docs/models.md shows, for tests/test_typing.py.

The test runs mypy on this file and compares what its ``reveal_type`` lines
show with the types expected, and imports it in a separate interpreter to
compare the TYPE_CHECKING declarations with what ``ref_mixins()`` generates.
The test session itself never imports it: its tables would join
``dbcore.Base.metadata``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dbcore import Agent, Base, BaseMixin, Memory, UpdateMixin, ref_mixins
from dbcore.DB_Agents import OptionalAgentRefMixin

if TYPE_CHECKING:
    from typing_extensions import reveal_type


class Person(Base, BaseMixin, UpdateMixin):
    __tablename__ = "people"

    name: Mapped[str] = mapped_column(sa.Unicode(200), comment="Full name.")

    if TYPE_CHECKING:
        notes_as_author: Mapped[list[Note]]  # backref of Note.author


if TYPE_CHECKING:

    class AuthorPersonRefMixin:
        author_id: Mapped[uuid.UUID]
        author: Mapped[Person]

else:
    AuthorPersonRefMixin, _ = ref_mixins(Person, role="author")


class Note(Base, BaseMixin, AuthorPersonRefMixin, OptionalAgentRefMixin):
    __tablename__ = "notes"

    body: Mapped[str] = mapped_column(sa.UnicodeText, default="", comment="Text of the note.")


def _revealed(memory: Memory, agent: Agent, person: Person, note: Note) -> None:
    """Never called: what mypy sees."""
    reveal_type(Memory.agent)
    reveal_type(memory.agent)
    reveal_type(memory.agent_id)
    reveal_type(memory.world)
    reveal_type(agent.memories)
    reveal_type(agent.owner)
    reveal_type(Note.author)
    reveal_type(note.author)
    reveal_type(note.author_id)
    reveal_type(note.agent)
    reveal_type(note.agent_id)
    reveal_type(person.notes_as_author)
    note.author = agent  # type: ignore[assignment]  # an Agent is not a Person (unused if author were Any)
