"""seed(): idempotent, ordered by foreign keys, validated ids, on every live dialect."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dbcore.base import TYPE_ANNOTATION_MAP, BaseModel, make_base, make_metadata, validate_seed_list
from dbcore.errors import ValidationError
from dbcore.Mixins import BaseMixin, SoftDeleteMixin, UpdateMixin
from dbcore.refs import ref_mixins
from dbcore.seeding import SEEDING_INFO_KEY, seed
from dbcore.types import SqlEnum


class SeedBase(BaseModel, DeclarativeBase):
    metadata = make_metadata()
    type_annotation_map = dict(TYPE_ANNOTATION_MAP)


class Severity(enum.IntEnum):
    LOW = 1
    HIGH = 2


class ActivityType(SeedBase, BaseMixin, UpdateMixin, SoftDeleteMixin):
    __tablename__ = "activity_types"
    name: Mapped[str] = mapped_column(sa.String(50), comment="Name of the activity type.")
    description: Mapped[str] = mapped_column(sa.String(200), comment="What the activity type means.")
    severity: Mapped[Severity] = mapped_column(SqlEnum(Severity), default=Severity.LOW, comment="How serious it is.")

    seed_list = [
        {
            "id": "FFFFFFFF-FFFF-FFFF-0000-FFFFFFFFFFFF",
            "name": "Error",
            "description": "The agent hit an error.",
            "severity": Severity.HIGH,
        },
        {"id": "FFFFFFFF-FFFF-FFFF-00FF-FFFFFFFFFFFF", "name": "Warning", "description": "The agent warns."},
        {"id": "ffffffff-ffff-ffff-ffff-ffffffffffff", "name": "Thinking", "description": "The agent thinks."},
    ]


ActivityTypeRefMixin, _ = ref_mixins(ActivityType)


# Declared before its parent table on purpose: seeding must still insert the parent first
# ("activity_types" sorts before "a_rules" only by foreign key, not by name or declaration).
class Rule(SeedBase, BaseMixin, ActivityTypeRefMixin):
    __tablename__ = "a_rules"
    pattern: Mapped[str] = mapped_column(sa.String(50), comment="Pattern that triggers the rule.")

    seed_list = [
        {
            "id": "FFFFFFFF-FFFF-FFFF-0001-FFFFFFFFFFFF",
            "pattern": "error*",
            "activity_type_id": "FFFFFFFF-FFFF-FFFF-0000-FFFFFFFFFFFF",
        },
    ]


class Unseeded(SeedBase, BaseMixin):
    __tablename__ = "unseeded"
    label: Mapped[str] = mapped_column(sa.String(10), comment="Nothing to seed.")


@pytest.fixture
def db(engine: Engine) -> Engine:
    SeedBase.metadata.create_all(engine)
    return engine


@contextmanager
def writes(engine: Engine) -> Iterator[list[str]]:
    """Collect the INSERT/UPDATE/DELETE statements sent through ``engine``."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_seed_inserts_then_second_run_writes_nothing(db: Engine) -> None:
    with Session(db) as session:
        report = seed(session, registry=SeedBase.registry)
        session.commit()
    assert (report.inserted, report.updated, report.unchanged) == (4, 0, 0)
    assert list(report.tables) == ["activity_types", "a_rules"]  # foreign-key order

    with Session(db) as session:
        with writes(db) as statements:
            again = seed(session, registry=SeedBase.registry)
            session.commit()
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    assert statements == []

    with Session(db) as session:
        error = session.get(ActivityType, uuid.UUID("FFFFFFFF-FFFF-FFFF-0000-FFFFFFFFFFFF"))
        assert error is not None and error.severity is Severity.HIGH and error.name == "Error"
        rule = session.scalars(sa.select(Rule)).one()
        assert rule.activity_type is error
        assert {a.name for a in session.scalars(sa.select(ActivityType))} == {"Error", "Warning", "Thinking"}


def test_seed_updates_only_changed_rows(db: Engine) -> None:
    with Session(db) as session:
        seed(session, registry=SeedBase.registry)
        session.commit()
    with Session(db) as session:
        warning = session.get(ActivityType, uuid.UUID("FFFFFFFF-FFFF-FFFF-00FF-FFFFFFFFFFFF"))
        assert warning is not None
        warning.description = "edited by hand"
        thinking = session.get(ActivityType, uuid.UUID("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"))
        assert thinking is not None
        session.delete(thinking)
        session.commit()

    with Session(db) as session:
        with writes(db) as statements:
            report = seed(session, models=[ActivityType, Rule])
            session.commit()
    assert (report.inserted, report.updated, report.unchanged) == (1, 1, 2)
    assert sum(s.lstrip().upper().startswith("UPDATE") for s in statements) == 1
    with Session(db) as session:
        warning = session.get(ActivityType, uuid.UUID("FFFFFFFF-FFFF-FFFF-00FF-FFFFFFFFFFFF"))
        assert warning is not None and warning.description == "The agent warns."


def test_soft_deleted_seed_row_is_not_inserted_twice(db: Engine) -> None:
    with Session(db) as session:
        seed(session, registry=SeedBase.registry)
        session.commit()
        error = session.get(ActivityType, uuid.UUID("FFFFFFFF-FFFF-FFFF-0000-FFFFFFFFFFFF"))
        assert error is not None
        error.soft_delete()
        session.commit()
    with Session(db) as session:
        report = seed(session, registry=SeedBase.registry)
        session.commit()
    assert report.inserted == 0 and report.updated == 0


def test_seeding_flag_is_set_while_running(db: Engine) -> None:
    flags: list[bool] = []

    @event.listens_for(Session, "before_flush")
    def watch(session: Session, *args: Any) -> None:
        flags.append(bool(session.info.get(SEEDING_INFO_KEY)))

    try:
        with Session(db) as session:
            seed(session, registry=SeedBase.registry)
            assert SEEDING_INFO_KEY not in session.info
            session.rollback()
    finally:
        event.remove(Session, "before_flush", watch)
    assert flags and all(flags)


def test_malformed_seed_id_is_refused_at_class_definition() -> None:
    Other = make_base("Other")
    with pytest.raises(ValidationError, match=r"BadSeed\.seed_list\[1\] has id 'FFFFFFFF-FFFF-0000-FFFF-FFFFFFFFFFFF'"):

        class BadSeed(Other, BaseMixin):
            __tablename__ = "bad_seeds"
            seed_list = [
                {"id": "FFFFFFFF-FFFF-FFFF-0001-FFFFFFFFFFFF"},
                {"id": "FFFFFFFF-FFFF-0000-FFFF-FFFFFFFFFFFF"},
            ]

    with pytest.raises(ValidationError, match=r"NoId\.seed_list\[0\] has no 'id'"):

        class NoId(Other, BaseMixin):
            __tablename__ = "no_ids"
            seed_list = [{"name": "x"}]


def test_seed_ids_mariadb_refuses_are_refused_at_class_definition() -> None:
    Other = make_base("Other")
    for middle in ("0100", "0A01", "80FF"):
        with pytest.raises(ValidationError, match=r"XXXX in 0000-00FF or 8100-FFFF \(MariaDB's UUID type refuses"):

            class Between(Other, BaseMixin):
                __tablename__ = f"between_{middle}"
                seed_list = [{"id": f"FFFFFFFF-FFFF-FFFF-{middle}-FFFFFFFFFFFF"}]


def test_the_seed_id_range_round_trips_on_every_dialect(engine: Engine) -> None:
    Edges = make_base("Edges")
    ids = [f"FFFFFFFF-FFFF-FFFF-{middle}-FFFFFFFFFFFF" for middle in ("0000", "00FF", "8100", "FFFF")]

    class Edge(Edges, BaseMixin):
        __tablename__ = "seed_edges"
        seed_list = [{"id": seed_id} for seed_id in ids]

    Edges.metadata.create_all(engine)
    with Session(engine) as session:
        assert seed(session, registry=Edges.registry).inserted == 4
        session.commit()
        assert sorted(str(row).upper() for row in session.scalars(sa.select(Edge.id))) == sorted(ids)


def test_malformed_seed_id_is_refused_at_seed_time_for_any_registry(memory_engine: Engine) -> None:
    class Plain(DeclarativeBase):  # no BaseModel: nothing validated at class definition
        pass

    class Loose(Plain, BaseMixin):
        __tablename__ = "loose"
        seed_list = [{"id": "12345678-FFFF-FFFF-0001-FFFFFFFFFFFF"}]

    Plain.metadata.create_all(memory_engine)
    with Session(memory_engine) as session, pytest.raises(ValidationError, match="Loose.seed_list"):
        seed(session, registry=Plain.registry)
    with pytest.raises(ValidationError, match="XXXX"):
        validate_seed_list(Loose)


def test_unknown_seed_column_is_refused(memory_engine: Engine) -> None:
    Other = make_base("Other")

    class Typo(Other, BaseMixin):
        __tablename__ = "typos"
        seed_list = [{"id": "FFFFFFFF-FFFF-FFFF-0001-FFFFFFFFFFFF", "nmae": "x"}]

    Other.metadata.create_all(memory_engine)
    with Session(memory_engine) as session, pytest.raises(ValidationError, match="unknown column 'nmae'"):
        seed(session, models=[Typo])
