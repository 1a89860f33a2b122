"""Adapter cache (expiry never returned), logs and tasks, and what a view may touch of them."""

from __future__ import annotations

import datetime
import uuid

import pytest
import sqlalchemy as sa

import dbcore
from dbcore.DB_Agents import Task, TaskStatus
from dbcore.DB_Memories import CacheEntry, Log
from tests.adapter_scene import count, scene
from tests.api_modes import AdapterView

VALUES = [{"nested": {"list": [1, 2.5, "ü", None, True]}}, ["a", 1], "plain", 2**53, 0.1, False, None]


def backdate(adapter: AdapterView, agent: uuid.UUID) -> None:
    """Make the agent's cache entries expire one minute ago (plain SQL, no sleeping)."""
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    with dbcore.get_engine(adapter.settings).begin() as connection:
        connection.execute(
            sa.update(CacheEntry)
            .where(CacheEntry.agent_id == agent, CacheEntry.expires_at.is_not(None))
            .values(expires_at=past)
        )


def test_cache_round_trips_json(adapter: AdapterView) -> None:
    agent = adapter.create_agent("a").id
    for position, value in enumerate(VALUES):
        adapter.set_cache(f"k{position}", value, agent_id=agent)
        assert adapter.get_cache(f"k{position}", agent_id=agent, default="missing") == value
    adapter.set_cache("k0", "replaced", agent_id=agent, ttl=datetime.timedelta(hours=1))
    assert (
        adapter.get_cache("k0", agent_id=agent) == "replaced"
        and count(adapter, CacheEntry, agent_id=agent, key="k0") == 1
    )
    assert adapter.delete_cache("k0", agent_id=agent) is True and adapter.delete_cache("k0", agent_id=agent) is False
    key = f"global-{uuid.uuid4().hex}"
    adapter.set_cache(key, 1)
    adapter.set_cache(key, 2)
    assert adapter.get_cache(key) == 2 and count(adapter, CacheEntry, key=key) == 1


def test_an_expired_entry_is_never_returned(adapter: AdapterView) -> None:
    agent = adapter.create_agent("a").id
    adapter.set_cache("short", "v", agent_id=agent, ttl=60)
    adapter.set_cache("forever", "v", agent_id=agent)
    backdate(adapter, agent)
    assert adapter.get_cache("short", agent_id=agent) is None and adapter.get_cache("forever", agent_id=agent) == "v"
    assert adapter.delete_cache("short", agent_id=agent) is False  # it was already gone for readers
    adapter.set_cache("short", "v", agent_id=agent, ttl=60)
    backdate(adapter, agent)
    assert adapter.for_agent(agent).purge_expired_cache() == 1 and count(adapter, CacheEntry, agent_id=agent) == 1


def test_bad_cache_input_writes_nothing(adapter: AdapterView) -> None:
    agent = adapter.create_agent("a").id
    before = count(adapter, CacheEntry)
    for call, error in (
        (lambda: adapter.set_cache("k", 1, ttl=0, agent_id=agent), "ttl=0"),
        (lambda: adapter.set_cache("k", 1, ttl=float("nan"), agent_id=agent), "ttl=nan"),
        (lambda: adapter.set_cache("", 1, agent_id=agent), "key=''"),
        (lambda: adapter.set_cache("k", 1, agent_id="nope"), "agent_id='nope'"),
    ):
        with pytest.raises(dbcore.ValidationError, match=error):
            call()
    assert count(adapter, CacheEntry) == before


def test_logs(adapter: AdapterView) -> None:
    s = scene(adapter)
    entries = [
        adapter.log(type="action" if i % 2 else "model", body={"i": i}, agent_id=s.agent, room_id=s.room)
        for i in range(5)
    ]
    page = adapter.get_logs(agent_id=s.agent, limit=2)
    assert len(page) == 2 and page.next_cursor
    rest = adapter.get_logs(agent_id=s.agent, limit=10, after=page.next_cursor)
    assert len(rest) == 3 and {e.id for e in [*page, *rest]} == {e.id for e in entries}
    assert {e.body["i"] for e in adapter.get_logs(room_id=s.room, type="action")} == {1, 3}
    assert adapter.delete_log(entries[0].id) is True and adapter.delete_log(entries[0].id) is False
    before = count(adapter, Log)
    with pytest.raises(dbcore.ValidationError, match="body must be a dict"):
        adapter.log(type="x", body=[1], agent_id=s.agent)
    with pytest.raises(dbcore.ForeignKeyViolation):
        adapter.log(type="x", body={}, agent_id=s.agent, room_id=uuid.uuid4())
    assert count(adapter, Log) == before


def test_tasks(adapter: AdapterView) -> None:
    s = scene(adapter)
    task = adapter.create_task("remind", agent_id=s.agent, tags=["daily", "chat"], room_id=s.room, metadata={"at": "9"})
    other = adapter.create_task("remind", agent_id=s.agent, tags=["daily"], status=TaskStatus.RUNNING)
    assert adapter.get_task(task.id).meta == {"at": "9"} and adapter.require_task(task.id).status is TaskStatus.PENDING
    assert {t.id for t in adapter.get_tasks(agent_id=s.agent, tags=["daily"])} == {task.id, other.id}
    assert [t.id for t in adapter.get_tasks(agent_id=s.agent, tags=["daily", "chat"])] == [task.id]
    assert [t.id for t in adapter.get_tasks(room_id=s.room)] == [task.id]
    assert [t.id for t in adapter.get_tasks(agent_id=s.agent, status="running")] == [other.id]
    assert {t.id for t in adapter.get_tasks_by_name("remind")} >= {task.id, other.id}
    assert adapter.update_task(task.id, status=3, tags=["done"]).status is TaskStatus.DONE
    assert adapter.delete_task(task.id) is True and adapter.get_task(task.id) is None
    assert adapter.delete_task(task.id) is False
    before = count(adapter, Task)
    for call, error in (
        (lambda: adapter.create_task("x", agent_id=s.agent, status="later"), "status='later'"),
        (lambda: adapter.create_task("x", agent_id=s.agent, tags="solo"), "tags must be a list"),
        (lambda: adapter.update_task(other.id, status=True), "status=True"),
    ):
        with pytest.raises(dbcore.ValidationError, match=error):
            call()
    with pytest.raises(dbcore.NotFound):
        adapter.update_task(uuid.uuid4(), name="x")
    assert count(adapter, Task) == before and adapter.get_task(other.id).status is TaskStatus.RUNNING


def test_a_view_touches_only_its_agents_cache_logs_and_tasks(adapter: AdapterView) -> None:
    mine, theirs = adapter.create_agent("mine").id, adapter.create_agent("theirs").id
    adapter.set_cache("k", "theirs", agent_id=theirs)
    key = f"global-{uuid.uuid4().hex}"
    adapter.set_cache(key, "global")
    entry = adapter.log(type="x", body={}, agent_id=theirs)
    task = adapter.create_task("t", agent_id=theirs)
    view = adapter.for_agent(mine)
    assert view.get_cache("k") is None and view.get_cache(key) is None and view.delete_cache("k") is False
    view.set_cache("k", "mine")
    assert view.get_cache("k") == "mine" and adapter.get_cache("k", agent_id=theirs) == "theirs"
    with pytest.raises(dbcore.PermissionDenied):
        view.get_cache("k", agent_id=theirs)
    assert view.get_logs().items == [] and view.delete_log(entry.id) is False
    assert view.get_task(task.id) is None and view.get_tasks().items == [] and view.delete_task(task.id) is False
    with pytest.raises(dbcore.NotFound):
        view.update_task(task.id, name="mine")
    with pytest.raises(dbcore.PermissionDenied):
        view.create_task("t", agent_id=theirs)
    with pytest.raises(dbcore.PermissionDenied):
        view.log(type="x", body={}, agent_id=theirs)
    assert count(adapter, Log, id=entry.id) == 1 and adapter.get_task(task.id).name == "t"
