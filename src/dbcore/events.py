"""Post-save triggers and state-transition hooks that run only after a successful COMMIT.

::

    @on_saved(Memory)                      # every insert/update/delete of a Memory
    def index_memory(obj, action): ...

    @on_transition(Task, "status", from_=Status.RUNNING, to=Status.DONE)
    def task_done(obj, old, new): ...

What happens (the session listeners are in :mod:`dbcore.hooks`; they act on
sessions bound to dbcore engines):

- at each flush (``after_flush``) the written objects and the attribute
  changes are recorded in ``session.info``, tagged with the transaction (or
  savepoint) they were flushed in;
- on the COMMIT of the outermost transaction (``after_commit``) the hooks run,
  in flush order; a savepoint release keeps the record for the outer commit;
- a rollback (of the transaction, or of the savepoint they were flushed in)
  and closing the session without commit discard the record: no hook runs.

Hooks run inside ``after_commit``: the object's loaded attributes are still
readable, but the session can emit no SQL; open another session for further
work. A hook that raises is logged and the remaining hooks still run (the data
is already committed). A soft delete is an ``"update"``.

Transitions fire for updates of existing rows only, not for inserts; ``from_``
and ``to`` of ``None`` (the default) match any value. Registering a transition
makes the attribute load its old value before it is replaced, so ``from_``
matches even when the attribute was expired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

__all__ = [
    "on_saved",
    "on_transition",
    "ANY",
    "SAVED_ACTIONS",
    "remove_hooks",
    "record_flush",
    "take_after_commit",
    "run_hooks",
    "discard_rolled_back",
    "discard_pending",
]

log = logging.getLogger("dbcore.events")

F = TypeVar("F", bound=Callable[..., Any])

SAVED_ACTIONS = frozenset({"insert", "update", "delete"})
_PENDING = "dbcore.events.pending"


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: Matches any value in :func:`on_transition` (same as leaving ``from_``/``to`` as None).
ANY: Any = _Any()


@dataclass(frozen=True)
class _SavedHook:
    model: type
    actions: frozenset[str]
    fn: Callable[[Any, str], Any]


@dataclass(frozen=True)
class _TransitionHook:
    model: type
    attribute: str
    from_: Any
    to: Any
    fn: Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class _Pending:
    transaction: SessionTransaction
    run: Callable[[], Any]
    label: str


class _Hooks:
    """The registered hooks."""

    def __init__(self) -> None:
        self.saved: list[_SavedHook] = []
        self.transitions: list[_TransitionHook] = []


_hooks = _Hooks()


def on_saved(*models: type, actions: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Register ``fn(obj, action)`` to run after COMMIT for each saved instance of ``models``.

    ``action`` is ``"insert"``, ``"update"`` or ``"delete"``; pass ``actions=``
    to subscribe to some of them. Subclasses and mixin users match too.
    """
    if not models:
        raise TypeError("on_saved() needs at least one model class")
    wanted = frozenset(actions) if actions is not None else SAVED_ACTIONS
    unknown = wanted - SAVED_ACTIONS
    if unknown:
        raise ValueError(f"on_saved actions must be among {sorted(SAVED_ACTIONS)}, got {sorted(unknown)}")

    def register(fn: F) -> F:
        for model in models:
            _hooks.saved.append(_SavedHook(model, wanted, fn))
        return fn

    return register


def _noop(target: Any, value: Any, oldvalue: Any, initiator: Any) -> None:
    return None


def on_transition(model: type, attribute: str, *, from_: Any = None, to: Any = None) -> Callable[[F], F]:
    """Register ``fn(obj, old, new)`` to run after COMMIT when ``attribute`` changed from ``from_`` to ``to``."""
    mapper: sa.orm.Mapper[Any] | None = sa.inspect(model, raiseerr=False)
    if mapper is None or attribute not in mapper.column_attrs:
        raise ValueError(f"on_transition: {getattr(model, '__name__', model)!r} has no mapped column {attribute!r}")

    def register(fn: F) -> F:
        # active_history: load the old value before it is replaced, so from_ can be matched.
        attr = getattr(model, attribute)
        if not event.contains(attr, "set", _noop):
            event.listen(attr, "set", _noop, active_history=True, propagate=True)
        _hooks.transitions.append(
            _TransitionHook(model, attribute, None if from_ is ANY else from_, None if to is ANY else to, fn)
        )
        return fn

    return register


def remove_hooks(fn: Callable[..., Any]) -> None:
    """Unregister every hook that calls ``fn`` (mainly for tests)."""
    _hooks.saved[:] = [h for h in _hooks.saved if h.fn is not fn]
    _hooks.transitions[:] = [h for h in _hooks.transitions if h.fn is not fn]


# --- called by the session listeners in dbcore.hooks ----------------------------------


def _current_transaction(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def record_flush(session: Session, on_dbcore: Callable[[Any], bool]) -> None:
    """Record what the flush wrote for the hooks (``on_dbcore``: the object's bind is dbcore's)."""
    if not (_hooks.saved or _hooks.transitions):
        return
    transaction = _current_transaction(session)
    if transaction is None:
        return
    pending: list[_Pending] = session.info.setdefault(_PENDING, [])

    def record(action: str, obj: Any) -> None:
        for hook in _hooks.saved:
            if action in hook.actions and isinstance(obj, hook.model) and on_dbcore(obj):
                pending.append(_Pending(transaction, _bind(hook.fn, obj, action), f"{hook.fn!r}({obj!r}, {action})"))

    for obj in session.new:
        record("insert", obj)
    for obj in session.dirty:
        if session.is_modified(obj, include_collections=False):
            record("update", obj)
            if on_dbcore(obj):
                _record_transitions(pending, transaction, obj)
    for obj in session.deleted:
        record("delete", obj)


def _record_transitions(pending: list[_Pending], transaction: SessionTransaction, obj: Any) -> None:
    state = sa.inspect(obj)
    for hook in _hooks.transitions:
        if not isinstance(obj, hook.model):
            continue
        history = state.attrs[hook.attribute].history
        if not history.added:
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0]
        if old == new:
            continue
        if hook.from_ is not None and old != hook.from_:
            continue
        if hook.to is not None and new != hook.to:
            continue
        pending.append(
            _Pending(transaction, _bind(hook.fn, obj, old, new), f"{hook.fn!r}({obj!r}, {old!r} -> {new!r})")
        )


def _bind(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: fn(*args)


def take_after_commit(session: Session) -> list[_Pending]:
    """Take the hooks the outermost COMMIT owes (none when a savepoint was released: they wait for it)."""
    if session.in_nested_transaction():
        return []
    return session.info.pop(_PENDING, [])  # type: ignore[no-any-return]


def run_hooks(pending: list[_Pending]) -> None:
    """Run hooks taken by :func:`take_after_commit`; one that raises is logged, the others still run."""
    for item in pending:
        try:
            item.run()
        except Exception:
            log.exception("post-commit hook %s failed; the transaction was already committed", item.label)


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def discard_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Forget what was flushed inside a transaction or savepoint that rolled back."""
    pending: list[_Pending] | None = session.info.get(_PENDING)
    if pending:
        pending[:] = [item for item in pending if not _within(item.transaction, previous_transaction)]


def discard_pending(session: Session) -> None:
    """Forget every record: the outermost transaction ended without a COMMIT consuming them."""
    session.info.pop(_PENDING, None)
