"""Post-save hooks and transition hooks run after COMMIT only, on every live dialect, sync and async.

Each test holds its sessions open with ``api.session`` (tests/api_modes.py): a step
that calls ``session.commit()`` is, in async mode, what ``await AsyncSession.commit()``
does (the sync session's commit, run through the greenlet bridge), and the end of the
block is ``get_session``'s or ``get_async_session``'s own COMMIT.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import dbcore
from dbcore.base import TYPE_ANNOTATION_MAP, BaseModel, make_metadata
from dbcore.events import on_saved, on_transition, remove_hooks
from dbcore.Mixins import BaseMixin, SoftDeleteMixin
from dbcore.types import SqlEnum
from tests.api_modes import Api


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
def db(settings: dbcore.Settings) -> dbcore.Settings:
    EventBase.metadata.create_all(dbcore.get_engine(settings))
    return settings


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


def commit(session: Session) -> None:
    session.commit()


def added(*objects: object) -> Callable[[Session], None]:
    """Add ``objects`` and flush them (written, not committed)."""

    def work(session: Session) -> None:
        session.add_all(objects)
        session.flush()

    return work


class Abandoned(Exception):
    """Raised inside a unit so that it ends without COMMIT."""


def test_saved_hook_fires_after_commit_only(api: Api, db: dbcore.Settings, saved: list[tuple[str, str]]) -> None:
    task = Task(title="a")
    with api.session(db) as step:
        step(added(task, Other(label="ignored")))
        assert saved == []  # flushed, not committed
        step(commit)
        assert saved == [("a", "insert")]
        step(lambda session: setattr(task, "title", "b"))
        step(commit)
        assert saved[-1] == ("b", "update")
        step(lambda session: task.soft_delete())
        step(commit)
        assert saved[-1] == ("b", "update")
        step(lambda session: session.delete(task))
        step(lambda session: session.flush())
        assert len(saved) == 3  # the delete is flushed; the end of the block commits it
    assert saved[-1] == ("b", "delete")
    assert len(saved) == 4


def test_rolled_back_transaction_fires_nothing(api: Api, db: dbcore.Settings, saved: list[tuple[str, str]]) -> None:
    def rolled_back(session: Session) -> None:
        added(Task(title="lost"))(session)
        session.rollback()

    with api.session(db) as step:
        step(rolled_back)
        step(commit)
    with pytest.raises(Abandoned), api.session(db) as step:  # ends without COMMIT
        step(added(Task(title="abandoned")))
        raise Abandoned
    api.unit(db, added(Task(title="kept")))  # nothing of the units above may leak into this one's COMMIT
    assert saved == [("kept", "insert")]


def test_rolled_back_savepoint_fires_nothing(api: Api, db: dbcore.Settings, saved: list[tuple[str, str]]) -> None:
    def savepoints(session: Session) -> None:
        added(Task(title="outer"))(session)
        with session.begin_nested() as savepoint:
            added(Task(title="undone"))(session)
            savepoint.rollback()
        with session.begin_nested():
            session.add(Task(title="released"))

    with api.session(db) as step:
        step(savepoints)
        assert saved == []  # a savepoint release is not a commit
    assert sorted(saved) == [("outer", "insert"), ("released", "insert")]


def test_other_sessions_are_independent(api: Api, db: dbcore.Settings, saved: list[tuple[str, str]]) -> None:
    # (flushes do not overlap: SQLite allows one writer at a time)
    with api.session(db) as first, api.session(db) as second:
        second(added(Task(title="second")))
        first(lambda session: session.add(Task(title="first")))
        second(commit)
        assert saved == [("second", "insert")]
        first(lambda session: session.flush())
        first(lambda session: session.rollback())
        second(lambda session: session.add(Task(title="third")))
        second(commit)
    assert saved == [("second", "insert"), ("third", "insert")]


def set_status(task: Task, status: Status) -> Callable[[Session], None]:
    """Set ``task.status`` after expiring it, so its old value is loaded before it is replaced."""

    def work(session: Session) -> None:
        session.expire(task, ["status"])
        task.status = status

    return work


def test_transition_hooks_match_from_and_to(
    api: Api, db: dbcore.Settings, transitions: dict[str, list[tuple[Any, Any]]]
) -> None:
    task = Task(title="t")
    with api.session(db) as step:
        step(lambda session: session.add(task))
        step(commit)
        assert transitions == {"started": [], "finished": [], "any": []}  # inserts are not transitions

        step(set_status(task, Status.RUNNING))
        step(lambda session: session.flush())
        assert transitions["started"] == []  # fires after commit
        step(commit)
        assert transitions["started"] == [(Status.NEW, Status.RUNNING)]

        step(set_status(task, Status.NEW))
        step(commit)
        step(set_status(task, Status.DONE))
        step(commit)
        assert transitions["started"] == [(Status.NEW, Status.RUNNING)]  # NEW -> DONE is not a start
        assert transitions["finished"] == [(Status.NEW, Status.DONE)]

        step(lambda session: setattr(task, "title", "renamed"))  # no status change
        step(commit)
        step(set_status(task, Status.RUNNING))
        step(lambda session: session.rollback())
    assert transitions["any"] == [
        (Status.NEW, Status.RUNNING),
        (Status.RUNNING, Status.NEW),
        (Status.NEW, Status.DONE),
    ]


def test_on_transition_needs_a_column() -> None:
    with pytest.raises(ValueError, match="no mapped column 'nope'"):
        on_transition(Task, "nope")
