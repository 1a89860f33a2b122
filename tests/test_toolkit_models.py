"""A two-domain model set built with the toolkit alone, created and used on every live dialect.

The models live on their own declarative base (not dbcore's ``Base``), which
also proves the toolkit works with any registry.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import dbcore
from dbcore.base import TYPE_ANNOTATION_MAP, BaseModel, limit_identifier, make_base, make_metadata
from dbcore.errors import ConfigurationError, NotNullViolation
from dbcore.Mixins import BaseMixin, ExpirableMixin, ParentMixin, SoftDeleteMixin, UpdateMixin
from dbcore.refs import bind_reverse, ref_mixins
from dbcore.types import utcnow
from tests.api_modes import Api


class ToolkitBase(BaseModel, DeclarativeBase):
    metadata = make_metadata()
    type_annotation_map = dict(TYPE_ANNOTATION_MAP)


# --- people domain -----------------------------------------------------------


class Person(ToolkitBase, BaseMixin, UpdateMixin):
    __tablename__ = "people"
    name: Mapped[str] = mapped_column(sa.String(100), comment="Display name of the person.")


PersonRefMixin, OptionalPersonRefMixin = ref_mixins(Person)
AuthorPersonRefMixin, _ = ref_mixins(Person, role="author")
_, OptionalReviewerPersonRefMixin = ref_mixins(Person, role="reviewer")


class Team(ToolkitBase, BaseMixin):
    __tablename__ = "teams"
    title: Mapped[str] = mapped_column(sa.String(100), comment="Team name.")


# Late-bound before Member exists: the class name is resolved at mapper configuration.
bind_reverse(Team, "Member", name="members")


class Member(ToolkitBase, BaseMixin):
    __tablename__ = "members"
    team_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("teams.id"), index=True)
    nickname: Mapped[str] = mapped_column(sa.String(50), comment="How the team calls the member.")


# --- content domain ------------------------------------------------------------


class Note(ToolkitBase, BaseMixin, UpdateMixin, SoftDeleteMixin, PersonRefMixin):
    __tablename__ = "notes"
    body: Mapped[str] = mapped_column(sa.String(200), comment="Text of the note.")


class Entity(ToolkitBase, BaseMixin, OptionalPersonRefMixin):
    __tablename__ = "entities"
    label: Mapped[str] = mapped_column(sa.String(100), comment="Name of the entity.")
    attributes: Mapped[dict] = mapped_column(default=dict, comment="Free-form attributes (JSON).")


class Review(ToolkitBase, BaseMixin, AuthorPersonRefMixin, OptionalReviewerPersonRefMixin):
    __tablename__ = "reviews"
    verdict: Mapped[str] = mapped_column(sa.String(20), comment="Outcome of the review.")


class Folder(ToolkitBase, BaseMixin, ParentMixin, ExpirableMixin):
    __tablename__ = "folders"
    title: Mapped[str] = mapped_column(sa.String(100), comment="Folder title.")


# --- declarations (no database) ------------------------------------------------


def test_ref_mixin_names_and_columns() -> None:
    assert PersonRefMixin.__name__ == "PersonRefMixin"
    assert OptionalPersonRefMixin.__qualname__ == "OptionalPersonRefMixin"
    assert AuthorPersonRefMixin.__name__ == "AuthorPersonRefMixin"
    assert ref_mixins(Person) == (PersonRefMixin, OptionalPersonRefMixin)
    person_id = Note.__table__.c.person_id
    assert isinstance(person_id.type, type(Person.__table__.c.id.type))
    assert person_id.comment is None and person_id.index and not person_id.nullable
    assert Entity.__table__.c.person_id.nullable
    assert not Review.__table__.c.author_id.nullable and Review.__table__.c.reviewer_id.nullable
    assert {fk.target_fullname for fk in Review.__table__.foreign_keys} == {"people.id"}


def test_relationship_and_backref_names() -> None:
    sa.orm.configure_mappers()
    assert Note.person.property.mapper.class_ is Person
    assert Person.notes.property.mapper.class_ is Note
    assert Person.entities.property.mapper.class_ is Entity
    assert Person.reviews_as_author.property.mapper.class_ is Review
    assert Person.reviews_as_reviewer.property.mapper.class_ is Review
    assert Team.members.property.mapper.class_ is Member
    assert Member.team.property.mapper.class_ is Team


def test_column_order_id_first_audit_last() -> None:
    assert [c.name for c in Note.__table__.columns] == [
        "id",
        "body",
        "person_id",
        "created_at",
        "updated_at",
        "deleted_at",
    ]
    assert [c.name for c in Folder.__table__.columns] == ["id", "parent_id", "title", "created_at", "expires_at"]


def test_non_key_columns_have_comments() -> None:
    for table in ToolkitBase.metadata.sorted_tables:
        for column in table.columns:
            if column.primary_key or column.foreign_keys:
                assert column.comment is None, f"{table.name}.{column.name}"
            else:
                assert column.comment, f"{table.name}.{column.name}"


def test_naming_convention_is_deterministic_and_short() -> None:
    names = {ix.name for ix in Note.__table__.indexes} | {c.name for c in Note.__table__.constraints}
    assert names == {"ix_notes_person_id", "pk_notes", "fk_notes_person_id_people"}
    long = "fk_" + "x" * 80
    assert len(limit_identifier(long)) == 60
    assert limit_identifier(long) == limit_identifier(long) != limit_identifier(long + "y")

    Other = make_base("Other")

    class Long(Other, BaseMixin, ParentMixin):
        __tablename__ = "a_table_with_an_exceptionally_long_name_for_identifier_limits"

    generated = {ix.name for ix in Long.__table__.indexes} | {c.name for c in Long.__table__.constraints}
    assert all(len(name) <= 60 for name in generated), generated
    assert len(generated) == 3


def test_backref_name_clash_is_a_configuration_error() -> None:
    Other = make_base("Other")

    class Owner(Other, BaseMixin):
        __tablename__ = "owners"
        pets: Mapped[str] = mapped_column(sa.String(10), comment="clashes with the backref")

    OwnerRef, _ = ref_mixins(Owner)
    with pytest.raises(ConfigurationError, match=r"Owner\.pets"):

        class Pet(Other, BaseMixin, OwnerRef):
            __tablename__ = "pets"


def test_bind_reverse_refuses_existing_names() -> None:
    with pytest.raises(ConfigurationError, match="Team already has an attribute named 'title'"):
        bind_reverse(Team, Member, name="title")
    with pytest.raises(ConfigurationError, match="Member already has an attribute named 'nickname'"):
        bind_reverse(Team, Member, name="other_members", backref="nickname")


# --- live databases ---------------------------------------------------------------


@pytest.fixture
def db(engine: Engine) -> Engine:
    ToolkitBase.metadata.create_all(engine)
    return engine


def test_fk_columns_are_indexed_and_nullability_in_catalog(db: Engine) -> None:
    inspector = sa.inspect(db)
    for table, column, nullable in [
        ("notes", "person_id", False),
        ("entities", "person_id", True),
        ("reviews", "author_id", False),
        ("reviews", "reviewer_id", True),
        ("folders", "parent_id", True),
        ("members", "team_id", False),
    ]:
        leading = {ix["column_names"][0] for ix in inspector.get_indexes(table)}
        assert column in leading, f"{table}.{column} has no index: {inspector.get_indexes(table)}"
        assert f"ix_{table}_{column}" in {ix["name"] for ix in inspector.get_indexes(table)}
        columns = {c["name"]: c for c in inspector.get_columns(table)}
        assert columns[column]["nullable"] is nullable, f"{table}.{column}"


def test_refs_and_backrefs_both_directions(db: Engine) -> None:
    with Session(db) as session:
        ada, bob = Person(name="Ada"), Person(name="Bob")
        session.add_all([ada, bob])
        session.add(Note(body="first", person=ada))
        ada.notes.append(Note(body="second"))
        session.add(Entity(label="orphan", attributes={"k": [1, 2]}))
        session.add(Entity(label="owned", person=bob))
        session.add(Review(verdict="ok", author=ada, reviewer=bob))
        session.add(Review(verdict="self", author=bob))
        team = Team(title="core")
        team.members.append(Member(nickname="A"))
        session.add(team)
        session.commit()
        ada_id, bob_id = ada.id, bob.id

    with Session(db) as session:
        ada = session.get(Person, ada_id)
        bob = session.get(Person, bob_id)
        assert ada is not None and bob is not None
        assert isinstance(ada.id, uuid.UUID)
        assert sorted(n.body for n in ada.notes) == ["first", "second"]
        assert all(n.person is ada and n.person_id == ada_id for n in ada.notes)
        assert [e.label for e in bob.entities] == ["owned"]
        orphan = session.scalars(sa.select(Entity).where(Entity.person_id.is_(None))).one()
        assert orphan.person is None and orphan.attributes == {"k": [1, 2]}
        assert [r.verdict for r in ada.reviews_as_author] == ["ok"]
        assert ada.reviews_as_reviewer == []
        assert sorted(r.verdict for r in bob.reviews_as_author) == ["self"]
        assert [r.verdict for r in bob.reviews_as_reviewer] == ["ok"]
        assert bob.reviews_as_reviewer[0].author is ada
        member = session.scalars(sa.select(Member)).one()
        assert member.team.title == "core" and member.team.members == [member]


def test_required_reference_is_not_null(db: Engine) -> None:
    with Session(db) as session:
        session.add(Note(body="nobody's"))
        with pytest.raises(NotNullViolation):
            session.commit()


def test_updated_at_changes_on_update_only(db: Engine) -> None:
    with Session(db) as session:
        person = Person(name="Ada")
        session.add(person)
        session.commit()
        created, first = person.created_at, person.updated_at
        assert created.tzinfo is not None and first.tzinfo is not None
        session.add(Note(body="touches nothing on people", person=person))
        session.commit()
        assert person.updated_at == first
        person.name = "Ada L."
        session.commit()
        assert person.updated_at > first
        assert person.created_at == created

    with Session(db) as session:
        reloaded = session.scalars(sa.select(Person)).one()
        assert reloaded.updated_at > reloaded.created_at


def test_soft_delete_hidden_by_default_included_on_request(api: Api, settings: dbcore.Settings, db: Engine) -> None:
    """Both ways: units of get_session, or of get_async_session with each run through run_sync."""

    def add(session: Session) -> tuple[uuid.UUID, uuid.UUID]:
        ada = Person(name="Ada")
        kept, gone = Note(body="kept", person=ada), Note(body="gone", person=ada)
        session.add_all([kept, gone])
        session.commit()
        gone.soft_delete()
        session.commit()
        session.expire(gone)
        assert gone.is_deleted and gone.body == "gone"  # refreshing a soft-deleted object still works
        return gone.id, ada.id

    gone_id, ada_id = api.unit(settings, add)

    def hidden(session: Session) -> None:
        assert [n.body for n in session.scalars(sa.select(Note))] == ["kept"]
        assert session.get(Note, gone_id) is None
        everything = session.scalars(sa.select(Note).execution_options(include_deleted=True)).all()
        assert sorted(n.body for n in everything) == ["gone", "kept"]
        assert session.scalar(sa.select(sa.func.count()).select_from(Note.__table__)) == 2

    api.unit(settings, hidden)

    def related(session: Session) -> None:
        ada = session.get(Person, ada_id)
        assert ada is not None
        assert [n.body for n in ada.notes] == ["kept"]  # relationship loads are filtered too
        joined = session.scalars(sa.select(Person).join(Person.notes)).unique().all()
        assert joined == [ada]

    api.unit(settings, related)

    def restore(session: Session) -> None:
        gone_again = session.get(Note, gone_id, execution_options={"include_deleted": True})
        assert gone_again is not None and gone_again.deleted_at is not None
        gone_again.restore()

    api.unit(settings, restore)
    assert api.unit(settings, lambda session: session.scalar(sa.select(sa.func.count()).select_from(Note))) == 2


def test_parent_and_children(db: Engine) -> None:
    with Session(db) as session:
        root = Folder(title="root")
        child = Folder(title="child", parent=root)
        Folder(title="grandchild", parent=child)
        session.add(root)
        session.commit()
        root_id = root.id

    with Session(db) as session:
        root = session.get(Folder, root_id)
        assert root is not None and root.parent is None and root.parent_id is None
        assert [c.title for c in root.children] == ["child"]
        child = root.children[0]
        assert child.parent is root and child.parent_id == root_id
        assert [g.title for g in child.children] == ["grandchild"]
        assert child.children[0].parent is child


def test_expirable(db: Engine) -> None:
    with Session(db) as session:
        session.add_all(
            [
                Folder(title="past", expires_at=utcnow() - dt.timedelta(hours=1)),
                Folder(title="future", expires_at=utcnow() + dt.timedelta(hours=1)),
                Folder(title="never"),
            ]
        )
        session.commit()
    with Session(db) as session:
        folders = {f.title: f for f in session.scalars(sa.select(Folder))}
        assert folders["past"].is_expired
        assert not folders["future"].is_expired and not folders["never"].is_expired
        assert [f.title for f in session.scalars(sa.select(Folder).where(Folder.is_expired))] == ["past"]
        live = session.scalars(sa.select(Folder).where(~Folder.is_expired).order_by(Folder.title))
        assert [f.title for f in live] == ["future", "never"]


def test_repr_shows_class_and_id() -> None:
    ident = uuid.UUID(int=5)
    assert repr(Person(id=ident, name="x")) == f"<Person id={ident}>"
