"""The backref a reference mixin adds exists as soon as the referencing class does.

docs/models.md promises ``Person.notes`` once ``Note`` inherits ``PersonRefMixin``.
A user writes ``selectinload(Person.notes)`` in a module body, before any query has
configured the mappers; a backref made only at configuration would raise
AttributeError there. Each case runs in a fresh interpreter, since any earlier test
that queried would already have configured the mappers and hidden the defect.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

SRC = Path(__file__).resolve().parents[1] / "src"

# The docs' example, verbatim, then class-level use of the backrefs before any query.
DOCS_EXAMPLE = """
import uuid
from enum import IntEnum
from sqlalchemy.orm import Mapped, mapped_column
from dbcore import Base, BaseMixin, UpdateMixin, SqlEnum, Vector, ref_mixins, bind_reverse
from dbcore.types import Unicode

class Person(Base, BaseMixin, UpdateMixin):
    __tablename__ = "people"
    name: Mapped[str] = mapped_column(Unicode(200), comment="Full name.")

PersonRefMixin, OptionalPersonRefMixin = ref_mixins(Person)

class Note(Base, BaseMixin, PersonRefMixin):          # person_id (NOT NULL, indexed) + .person
    __tablename__ = "notes"                            # and the backref Person.notes
    body: Mapped[str] = mapped_column(Unicode(2000), comment="The note.")
"""

USE_AT_CLASS_LEVEL = """
import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload
import dbcore

BY_NAME = sa.select(Person).options(selectinload(Person.notes)).order_by(Person.name)
WITH_BODY = sa.select(Person).where(Person.notes.any(Note.body == "second"))

engine = dbcore.create_engine(dbcore.Settings(database_url=DATABASE_URL))
Base.metadata.create_all(engine, tables=[Person.__table__, Note.__table__])
with Session(engine) as session, session.begin():
    ada = Person(name="Ada")
    ada.notes.append(Note(body="first"))
    Note(body="second", person=ada)
    session.add(ada)
with Session(engine) as session:
    (ada,) = session.scalars(BY_NAME).all()
    assert sorted(note.body for note in ada.notes) == ["first", "second"], ada.notes
    assert all(note.person is ada for note in ada.notes)
    assert session.scalars(WITH_BODY).one() is ada
engine.dispose()
print("ok")
"""


def run_fresh(script: str, database_url: URL) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a new interpreter importing this worktree's dbcore."""
    prelude = f"DATABASE_URL = {database_url.render_as_string(hide_password=False)!r}\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_ran(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok"), result.stdout


def test_docs_backref_usable_before_any_query(database_url: URL) -> None:
    assert_ran(run_fresh(DOCS_EXAMPLE + USE_AT_CLASS_LEVEL, database_url))


def test_backref_added_after_mappers_were_configured(database_url: URL) -> None:
    # An application that already queried (so configured its mappers) and then imports
    # a plugin module declaring Note still gets Person.notes.
    configure_between = DOCS_EXAMPLE.replace(
        "PersonRefMixin, OptionalPersonRefMixin = ref_mixins(Person)",
        "from sqlalchemy.orm import configure_mappers\nconfigure_mappers()\n"
        "PersonRefMixin, OptionalPersonRefMixin = ref_mixins(Person)",
    )
    assert_ran(run_fresh(configure_between + USE_AT_CLASS_LEVEL, database_url))


@pytest.mark.sqlite
def test_role_backref_and_make_base_usable_before_any_query(tmp_path: Path) -> None:
    script = """
    import sqlalchemy as sa
    from sqlalchemy.orm import Mapped, mapped_column, selectinload
    from dbcore.base import make_base
    from dbcore.Mixins import BaseMixin
    from dbcore.refs import ref_mixins
    from dbcore.types import Unicode

    MyBase = make_base("MyBase")

    class Person(MyBase, BaseMixin):
        __tablename__ = "people"
        name: Mapped[str] = mapped_column(Unicode(200), comment="Full name.")

    AuthorRefMixin, _ = ref_mixins(Person, role="author")
    ReviewerRefMixin, _ = ref_mixins(Person, role="reviewer")

    class Review(MyBase, BaseMixin, AuthorRefMixin, ReviewerRefMixin):
        __tablename__ = "reviews"

    sa.select(Person).options(selectinload(Person.reviews_as_author), selectinload(Person.reviews_as_reviewer))
    assert Person.reviews_as_author.property.mapper.class_ is Review
    assert Person.reviews_as_author.property.back_populates == "author"
    assert Person.reviews_as_reviewer.property.back_populates == "reviewer"
    ada, bob = Person(name="Ada"), Person(name="Bob")
    review = Review(author=ada, reviewer=bob)
    assert ada.reviews_as_author == [review] and bob.reviews_as_reviewer == [review]
    assert ada.reviews_as_reviewer == []
    print("ok")
    """
    assert_ran(run_fresh(script, URL.create("sqlite", database=str(tmp_path / "unused.sqlite3"))))
