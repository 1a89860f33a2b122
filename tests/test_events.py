"""Post-save hooks and transition hooks run after COMMIT only, on every live dialect."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dbcore.base import TYPE_ANNOTATION_MAP, BaseModel, make_metadata
from dbcore.events import on_saved, on_transition, remove_hooks
from dbcore.Mixins import BaseMixin, SoftDeleteMixin
from dbcore.types import SqlEnum


class EventBase(BaseModel, DeclarativeBase):
    metadata = make_metadata()
    type_annotation_map = dict(TYPE_ANNOTATION_MAP)


class Status(enum.IntEnum):
    NEW = 1
    RUNNING = 2
    DONE = 3


class Task(EventBase, BaseMixin, SoftDeleteMixin):
    __tablename__ = "tasks"
    title: Mapped[str] = mapped_column(sa.String(50), comment="Task title.")
    status: Mapped[Status] = mapped_column(SqlEnum(Status), default=Status.NEW, comment="Lifecycle state.")


class Other(EventBase, BaseMixin):
    __tablename__ = "others"
    label: Mapped[str] = mapped_column(sa.String(50), comment="Unwatched.")


@pytest.fixture
def db(engine: Engine) -> Engine:
    EventBase.metadata.create_all(engine)
    return engine


@pytest.fixture
def saved() -> Iterator[list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []

    def hook(obj: Task, action: str) -> None:
        calls.append((obj.title, action))

    on_saved(Task)(hook)
    yield calls
    remove_hooks(hook)


@pytest.fixture
def transitions() -> Iterator[dict[str, list[tuple[Any, Any]]]]:
    calls: dict[str, list[tuple[Any, Any]]] = {"started": [], "finished": [], "any": []}

    def started(obj: Task, old: Status, new: Status) -> None:
        calls["started"].append((old, new))

    def finished(obj: Task, old: Status, new: Status) -> None:
        calls["finished"].append((old, new))

    def anything(obj: Task, old: Status, new: Status) -> None:
        calls["any"].append((old, new))

    on_transition(Task, "status", from_=Status.NEW, to=Status.RUNNING)(started)
    on_transition(Task, "status", to=Status.DONE)(finished)
    on_transition(Task, "status")(anything)
    yield calls
    for fn in (started, finished, anything):
        remove_hooks(fn)


def test_saved_hook_fires_after_commit_only(db: Engine, saved: list[tuple[str, str]]) -> None:
    with Session(db) as session:
        task = Task(title="a")
        session.add_all([task, Other(label="ignored")])
        session.flush()
        assert saved == []  # flushed, not committed
        session.commit()
        assert saved == [("a", "insert")]
        task.title = "b"
        session.commit()
        assert saved[-1] == ("b", "update")
        task.soft_delete()
        session.commit()
        assert saved[-1] == ("b", "update")
        session.delete(task)
        session.commit()
        assert saved[-1] == ("b", "delete")
        assert len(saved) == 4


def test_rolled_back_transaction_fires_nothing(db: Engine, saved: list[tuple[str, str]]) -> None:
    with Session(db) as session:
        session.add(Task(title="lost"))
        session.flush()
        session.rollback()
        session.commit()
    with Session(db) as session:
        session.add(Task(title="closed"))
        session.flush()
    with Session(db) as session:  # the session above closed without commit; nothing may leak here
        session.add(Task(title="kept"))
        session.commit()
    assert saved == [("kept", "insert")]


def test_rolled_back_savepoint_fires_nothing(db: Engine, saved: list[tuple[str, str]]) -> None:
    with Session(db) as session:
        session.add(Task(title="outer"))
        session.flush()
        with session.begin_nested() as savepoint:
            session.add(Task(title="undone"))
            session.flush()
            savepoint.rollback()
        with session.begin_nested():
            session.add(Task(title="released"))
        assert saved == []  # a savepoint release is not a commit
        session.commit()
    assert sorted(saved) == [("outer", "insert"), ("released", "insert")]


def test_other_sessions_are_independent(db: Engine, saved: list[tuple[str, str]]) -> None:
    # (flushes do not overlap: SQLite allows one writer at a time)
    with Session(db) as first, Session(db) as second:
        second.add(Task(title="second"))
        second.flush()
        first.add(Task(title="first"))
        second.commit()
        assert saved == [("second", "insert")]
        first.flush()
        first.rollback()
        second.add(Task(title="third"))
        second.commit()
    assert saved == [("second", "insert"), ("third", "insert")]


def test_transition_hooks_match_from_and_to(db: Engine, transitions: dict[str, list[tuple[Any, Any]]]) -> None:
    with Session(db) as session:
        task = Task(title="t")
        session.add(task)
        session.commit()
        assert transitions == {"started": [], "finished": [], "any": []}  # inserts are not transitions

        task.status = Status.RUNNING  # old value expired by the commit: loaded before replacing
        session.flush()
        assert transitions["started"] == []  # fires after commit
        session.commit()
        assert transitions["started"] == [(Status.NEW, Status.RUNNING)]

        task.status = Status.NEW
        session.commit()
        task.status = Status.DONE
        session.commit()
        assert transitions["started"] == [(Status.NEW, Status.RUNNING)]  # NEW -> DONE is not a start
        assert transitions["finished"] == [(Status.NEW, Status.DONE)]

        task.title = "renamed"  # no status change
        session.commit()
        task.status = Status.RUNNING
        session.rollback()
    assert transitions["any"] == [
        (Status.NEW, Status.RUNNING),
        (Status.RUNNING, Status.NEW),
        (Status.NEW, Status.DONE),
    ]


def test_on_transition_needs_a_column() -> None:
    with pytest.raises(ValueError, match="no mapped column 'nope'"):
        on_transition(Task, "nope")
