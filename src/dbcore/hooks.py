"""Every SQLAlchemy event dbcore listens to, in one place.

Session hooks act only on work sent to a *dbcore engine*: one made by
:func:`dbcore.create_engine` / :func:`dbcore.get_engine`, or handed to
:func:`attach`. A ``Session`` of another application on its own engine, in the same
process, is left alone; a ``Session(dbcore.get_engine())`` built by hand is guarded
like one from :func:`dbcore.get_session`. The session listeners are attached to
SQLAlchemy's ``Session`` class once, when this module is imported (nothing else
reaches every session, hand-made ones included); each first asks whether the work
goes to a dbcore engine and returns at once when it does not.

==========================  ==========================  ===========================================
hook                        event                       what it does
==========================  ==========================  ===========================================
system-table guard          Session ``before_flush``    refuses inserts, updates and deletes of
                            and ``do_orm_execute``;     ``__system__`` tables without the system
                            engine ``before_execute``   API key, Core statements on a session's
                            (by :func:`attach`)         or a bare connection included; a bare
                                                        one needs ``dbcore_system=True``
                                                        (:mod:`dbcore.security`)
system tables known         ``Mapper`` construction     notes the table of each ``__system__``
                                                        class (``after_mapper_constructed``), so
                                                        the engine guard looks it up in a set
connection owner            Session ``after_begin``,    remembers which session owns a dbcore
                            ``after_transaction_end``   connection, for the engine guard
soft-delete filter          Session ``do_orm_execute``  hides ``SoftDeleteMixin`` rows from ORM
                                                        SELECTs unless ``include_deleted=True``
outbox markers              Session ``after_flush``     with an external vector store: one
                            and ``do_orm_execute``      ``vector_outbox`` row per memory changed
                                                        by a flush or a bulk UPDATE/DELETE, noted
                                                        in ``session.info``
                                                        (:mod:`dbcore.vector_changes`)
push after commit           Session ``after_commit``,   after the outermost COMMIT, sends the
                            ``after_transaction_end``   memories whose markers the session wrote
                                                        to the store and deletes those markers;
                                                        a failure is logged, the markers wait for
                                                        sync (:mod:`dbcore.vector_push`); runs
                                                        before the post-save hooks; for
                                                        ``get_async_session`` both are handed
                                                        back (:func:`deferring_after_commit`)
                                                        and run after the awaited COMMIT
post-save / transitions     Session ``after_flush``,    records flushed changes and runs the
                            ``after_commit``,           :func:`~dbcore.on_saved` and
                            ``after_soft_rollback``,    :func:`~dbcore.on_transition` hooks after
                            ``after_transaction_end``   the outermost COMMIT (:mod:`dbcore.events`)
``updated_at``              mapper ``before_update``    refreshes ``UpdateMixin.updated_at`` on a
                            of ``UpdateMixin``          flush that changes the row (its classes
                                                        only, on any engine)
value checks on set         attribute ``set`` of each   runs the column type's bind check when a
                            column of a dbcore type,    value is assigned, so a wrong value fails
                            for mappers of ``Base`` and on the line that sets it; the value is
                            ``make_base`` bases         kept as given (installed at
                                                        ``mapper_configured``)
embedding version           engine ``before_execute``   locks the ``embedding_versions`` row
                            and ``after_execute``       before, and bumps it after, every
                                                        INSERT/UPDATE/DELETE of
                                                        ``memory_embeddings`` that succeeded
                                                        (attached by :func:`attach` and
                                                        :func:`track_embedding_writes`)
connection set-up           engine ``connect``,         SQLite pragmas, REGEXP and BEGIN; MariaDB
                            ``begin``,                  strict sql_mode; pgvector detection on
                            ``first_connect``           PostgreSQL (:mod:`dbcore.dialects`)
typed errors                engine ``handle_error``     driver errors become dbcore's typed errors
==========================  ==========================  ===========================================

Two listeners are attached elsewhere, where they are asked for: :func:`~dbcore.on_transition`
makes the watched attribute load its old value before a change (an attribute ``set``
event with ``active_history``), so ``from_`` can be matched; and :mod:`dbcore.refs`
adds the reverse side of a reference mixin (``Person.notes``) when the referencing
class is mapped (``after_mapper_constructed``), since only the module that makes the
mixins knows which reverse sides are owed, and they must exist whether or not this
module was imported.
"""

from __future__ import annotations

import functools
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import UnboundExecutionError
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, SessionTransaction, UOWTransaction, object_session

from dbcore import dialects, events, security, vector_changes, vector_push
from dbcore.base import Base, BaseModel
from dbcore.config import Settings
from dbcore.DB_Memories import Memory
from dbcore.Mixins import INCLUDE_DELETED, SoftDeleteMixin, UpdateMixin
from dbcore.types import utcnow, value_check
from dbcore.vector_changes import outbox_enabled

__all__ = [
    "attach",
    "track_embedding_writes",
    "is_dbcore_engine",
    "outbox_enabled",
    "AfterCommit",
    "deferring_after_commit",
]

_DEFERRED_AFTER_COMMIT = "dbcore.deferred_after_commit"

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
# engine.execution_options(...) makes a new Engine object on the same pool: it is dbcore's too.
_pools: weakref.WeakSet[Any] = weakref.WeakSet()
_counting: weakref.WeakSet[Engine] = weakref.WeakSet()
_MEMORY_MAPPER = sa.inspect(Memory)
# Which session owns a dbcore connection (set when its transaction begins, cleared when it ends).
_connection_owners: weakref.WeakKeyDictionary[Connection, Session] = weakref.WeakKeyDictionary()
_owned_connections: weakref.WeakKeyDictionary[Session, list[Connection]] = weakref.WeakKeyDictionary()


# --- engines ---------------------------------------------------------------------------


def attach(engine: Engine, settings: Settings) -> None:
    """Make ``engine`` a dbcore engine: connection set-up, typed errors, the session hooks.

    :func:`dbcore.create_engine` calls it; call it yourself only for an engine you
    built with ``sqlalchemy.create_engine`` and want dbcore's guarantees on.
    """
    if engine in _engines:
        return
    name = engine.dialect.name
    if name == "sqlite":
        database = engine.url.database or ""
        setup = functools.partial(
            dialects.prepare_sqlite_connection,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            in_memory=database in ("", ":memory:") or "mode=memory" in database,
        )
        event.listen(engine, "connect", lambda dbapi_connection, _record: setup(dbapi_connection))
        event.listen(engine, "begin", dialects.begin_sqlite)
        if engine.dialect.is_async:
            event.listen(engine, "invalidate", dialects.interrupt_cancelled_sqlite)
    elif name in ("mysql", "mariadb"):
        event.listen(
            engine, "connect", lambda dbapi_connection, _record: dialects.prepare_mysql_connection(dbapi_connection)
        )
    elif name == "postgresql":
        dialect = engine.dialect
        event.listen(
            engine,
            "first_connect",
            lambda dbapi_connection, _record: dialects.detect_pgvector(dialect, dbapi_connection),
        )
    # Base.metadata.tables itself, not a copy: keyed by table name (dbcore's tables have no schema).
    translate = functools.partial(dialects.translate_error, dbcore_tables=Base.metadata.tables)
    event.listen(engine, "handle_error", translate)
    event.listen(engine, "before_execute", _guard_system_tables)
    track_embedding_writes(engine)
    if settings.vector_backend != "integrated":
        vector_changes.enable_outbox(engine, settings)
    _engines.add(engine)
    _pools.add(engine.pool)


def track_embedding_writes(engine: Engine) -> None:
    """Bump the embedding version after every write that moves the search's rows (``moves_search_rows``)."""
    if engine not in _counting:
        event.listen(engine, "before_execute", _lock_embedding_version)
        event.listen(engine, "after_execute", _count_embedding_write)
        _counting.add(engine)


def _lock_embedding_version(conn: Connection, clauseelement: Any, multiparams: Any, params: Any, options: Any) -> None:
    # Taking the counter's row lock before the write, as the bump used to, keeps concurrent
    # writers queued on one row instead of deadlocking on embedding rows they both touch.
    if vector_changes.moves_search_rows(clauseelement):
        vector_changes.lock_embedding_version(conn)


def _count_embedding_write(
    conn: Connection, clauseelement: Any, multiparams: Any, params: Any, options: Any, result: Any
) -> None:
    # after_execute: only a statement that ran counts; one refused while binding (a bad vector) does not.
    if vector_changes.moves_search_rows(clauseelement):
        vector_changes.bump_embedding_version(conn)


def _guard_system_tables(conn: Connection, clauseelement: Any, multiparams: Any, params: Any, options: Any) -> None:
    table = security.system_table_written(clauseelement)
    if table is not None:
        security.check_connection_write(table, _connection_owners.get(conn), options)


def _engine_of(bind: Any) -> Engine | None:
    return getattr(bind, "engine", None)


def is_dbcore_engine(bind: Any) -> bool:
    """Whether ``bind`` (an Engine or a Connection) belongs to a dbcore engine."""
    engine = _engine_of(bind)
    return engine is not None and (engine in _engines or engine.pool in _pools)


def _bound_to_dbcore(session: Session, **bind_arguments: Any) -> bool:
    try:
        return is_dbcore_engine(session.get_bind(**bind_arguments))
    except UnboundExecutionError:
        return False


def _object_bound_to_dbcore(session: Session, obj: Any) -> bool:
    return _bound_to_dbcore(session, mapper=sa.inspect(obj).mapper)


# --- session hooks ------------------------------------------------------------------------


@event.listens_for(Session, "before_flush")
def _guard_flush(session: Session, _context: Any, _instances: Any) -> None:
    security.check_flush(session, lambda obj: _object_bound_to_dbcore(session, obj))


@event.listens_for(Session, "do_orm_execute")
def _on_orm_execute(state: ORMExecuteState) -> None:
    if not _bound_to_dbcore(state.session, **state.bind_arguments):
        return
    if state.is_select:
        _hide_soft_deleted(state)
    elif state.is_insert or state.is_update or state.is_delete:
        security.check_statement(state)
        if vector_changes.any_outbox() and (state.is_update or state.is_delete):
            _bulk_outbox_markers(state)


def _hide_soft_deleted(state: ORMExecuteState) -> None:
    # Column loads refresh an object already in hand (e.g. after commit); filtering them
    # would make a soft-deleted object raise ObjectDeletedError when read.
    if state.is_column_load or state.execution_options.get(INCLUDE_DELETED, False):
        return
    state.statement = state.statement.options(
        sa.orm.with_loader_criteria(SoftDeleteMixin, lambda cls: cls.deleted_at.is_(None), include_aliases=True)
    )


def _bulk_outbox_markers(state: ORMExecuteState) -> None:
    column = vector_changes.memory_id_column(state.statement)
    if column is None:
        return
    connection = state.session.connection(bind_arguments=state.bind_arguments)
    if outbox_enabled(connection):
        ids = vector_changes.matching_ids(connection, state.statement, column)
        markers = vector_changes.record_outbox(connection, ids, "delete" if state.is_delete else "upsert")
        vector_changes.note_markers(state.session, connection, markers)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush_context: UOWTransaction) -> None:
    if vector_changes.any_outbox() and _bound_to_dbcore(session, mapper=_MEMORY_MAPPER):
        connection = session.connection(bind_arguments={"mapper": _MEMORY_MAPPER})
        if outbox_enabled(connection):
            by_op: dict[str, list[uuid.UUID]] = {}
            for memory_id, op in vector_changes.flush_markers(session).items():
                by_op.setdefault(op, []).append(memory_id)
            for op, ids in by_op.items():
                vector_changes.note_markers(session, connection, vector_changes.record_outbox(connection, ids, op))
    events.record_flush(session, lambda obj: _object_bound_to_dbcore(session, obj))


@dataclass(frozen=True)
class AfterCommit:
    """The work a COMMIT owes, handed to :func:`dbcore.get_async_session` to do off the greenlet."""

    pushes: list[vector_push.CommittedPush]
    hooks: list[Any]


@contextmanager
def deferring_after_commit(session: Session) -> Iterator[list[AfterCommit]]:
    """Within the block, a COMMIT of ``session`` leaves its push and post-save hooks in the list yielded.

    ``get_async_session`` commits this way: on the event loop, the push's store calls
    then run on a worker thread instead of blocking the loop inside the COMMIT.
    """
    owed: list[AfterCommit] = []
    session.info[_DEFERRED_AFTER_COMMIT] = owed
    try:
        yield owed
    finally:
        session.info.pop(_DEFERRED_AFTER_COMMIT, None)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pushes = vector_push.committed_pushes(session)
    hooks = events.take_after_commit(session)
    owed: list[AfterCommit] | None = session.info.get(_DEFERRED_AFTER_COMMIT)
    if owed is not None:
        if pushes or hooks:
            owed.append(AfterCommit(pushes, hooks))
        return
    for push in pushes:  # first, so that post-save hooks can search the store
        vector_push.push_after_commit(push)
    events.run_hooks(hooks)


@event.listens_for(Session, "after_soft_rollback")
def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    events.discard_rolled_back(session, previous_transaction)


@event.listens_for(Session, "after_begin")
def _note_connection_owner(session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    if is_dbcore_engine(connection):
        _connection_owners[connection] = session
        _owned_connections.setdefault(session, []).append(connection)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        events.discard_pending(session)
        vector_changes.forget_markers(session)
        # A connection lent to the session (Session(bind=connection)) is bare again afterwards.
        for connection in _owned_connections.pop(session, ()):
            if _connection_owners.get(connection) is session:
                del _connection_owners[connection]


# --- mapper hooks -------------------------------------------------------------------------


@event.listens_for(Mapper, "after_mapper_constructed")
def _note_system_table(mapper: Mapper[Any], _class: type) -> None:
    security.note_system_tables([mapper])


security.note_system_tables(Base.registry.mappers)  # the ones mapped before this module loaded


@event.listens_for(UpdateMixin, "before_update", propagate=True)
def _touch_updated_at(_mapper: Mapper[Any], _connection: sa.Connection, target: UpdateMixin) -> None:
    session = object_session(target)
    # before_update also fires for objects that are dirty without net changes; leave those alone.
    if session is not None and session.is_modified(target, include_collections=False):
        target.updated_at = utcnow()


# Value checks on set: a dbcore column type's bind check, run where the value is assigned.
_value_checked: weakref.WeakSet[Mapper[Any]] = weakref.WeakSet()


@event.listens_for(Mapper, "mapper_configured")
def _on_mapper_configured(mapper: Mapper[Any], class_: type) -> None:
    if issubclass(class_, BaseModel):
        _check_values_when_set(mapper)


def _check_values_when_set(mapper: Mapper[Any]) -> None:
    """Listen to ``set`` on each of the mapper's own columns whose dbcore type checks values."""
    if mapper in _value_checked:
        return
    _value_checked.add(mapper)
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        # An inherited attribute shares its parent's instrumentation, which already listens.
        if prop.parent is not mapper or not isinstance(column, sa.Column):
            continue
        check = value_check(column.type)
        if check is not None:
            event.listen(mapper.class_manager[prop.key], "set", _checked_on_set(check), retval=True)


def _checked_on_set(check: Any) -> Any:
    def checked(_target: Any, value: Any, _oldvalue: Any, _initiator: Any) -> Any:
        # SQL expressions (sa.func..., sa.null()) are the database's to evaluate.
        if value is not None and not hasattr(value, "__clause_element__") and not isinstance(value, sa.ClauseElement):
            check(value)
        return value

    return checked


# Mappers configured before this module was imported get their checks now.
for _mapper in Base.registry.mappers:
    if _mapper.configured:
        _check_values_when_set(_mapper)
