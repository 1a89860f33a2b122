"""What every adapter operation receives: the session, the settings, the agent scope.

An operation is a plain function ``op(cx, *args)`` on a *sync* :class:`Session`.
:class:`~dbcore.adapter.DatabaseAdapter` calls it inside ``get_session``;
:class:`~dbcore.adapter.AsyncDatabaseAdapter` calls the same function inside
``AsyncSession.run_sync``, where the session's statements go through the async driver
without blocking the loop. The one thing an operation may not do itself is wait on a
client outside the session (the vector store): it asks :meth:`Context.wait`, which
calls the sync client, or awaits the async one from inside ``run_sync``.

The agent scope is what :meth:`~dbcore.adapter.DatabaseAdapter.for_agent` sets; every
operation that reads or writes agent-owned rows goes through :meth:`Context.owner`,
:meth:`Context.confine` and :meth:`Context.visible_rooms`, so the rule of what an agent
may see is written once, here.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only

from dbcore.config import Settings
from dbcore.DB_Entities import Entity, Participant, Room, World
from dbcore.errors import NotFound, PermissionDenied, ValidationError

if TYPE_CHECKING:
    from dbcore.vectorstores import VectorStore

__all__ = [
    "Context",
    "AdapterOptions",
    "Page",
    "as_uuid",
    "as_uuids",
    "keyset_page",
    "keyset_statement",
    "check_limit",
    "non_empty",
    "where_ids",
]

T = TypeVar("T")
S = TypeVar("S", bound=sa.Select[Any])
M = TypeVar("M")


@dataclass(frozen=True)
class AdapterOptions:
    """Choices made when the adapter is built, the same for every call."""

    #: Cosine similarity at or above which ``create_memory(unique=True)`` marks a near-duplicate.
    duplicate_threshold: float = 0.95


def as_uuid(value: Any, what: str = "id") -> uuid.UUID:
    """``value`` as a UUID (a UUID or its string); anything else is a ValidationError naming ``what``."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError(f"{what}={value!r} is not a UUID")


def as_uuids(values: Any, what: str = "ids") -> list[uuid.UUID]:
    """A list of UUIDs, refusing a lone string or UUID (which would be read as its characters)."""
    if values is None or isinstance(values, (str, bytes, uuid.UUID, dict)):
        raise ValidationError(f"{what} must be a list of UUIDs, got {type(values).__name__}; wrap one id in a list")
    return [as_uuid(value, what) for value in values]


@dataclass(frozen=True)
class Context:
    """One call's view of the adapter: its session, settings, options and agent scope."""

    session: Session
    settings: Settings
    options: AdapterOptions
    #: The agent this view is confined to (``for_agent``); None sees every agent's rows.
    scope: uuid.UUID | None
    store_factory: Callable[[], VectorStore]
    is_async: bool

    # --- waiting on clients outside the session ------------------------------------

    def wait(self, sync_call: Callable[[], T], async_call: Callable[[], Awaitable[T]]) -> T:
        """``sync_call()``, or for the async adapter ``async_call()`` awaited on the running loop."""
        if not self.is_async:
            return sync_call()
        return await_only(async_call())  # type: ignore[arg-type]

    def store(self) -> VectorStore:
        """The adapter's vector store (built on first use)."""
        return self.store_factory()

    # --- the agent scope -----------------------------------------------------------

    def owner(self, agent_id: Any, what: str = "agent_id") -> uuid.UUID:
        """The agent a new row belongs to: ``agent_id``, or the scope when none is given.

        A confined view refuses another agent's id with PermissionDenied; an unconfined
        one needs the id.
        """
        if agent_id is None:
            if self.scope is None:
                raise ValidationError(f"{what} is required (or use adapter.for_agent(agent_id))")
            return self.scope
        given = as_uuid(agent_id, what)
        if self.scope is not None and given != self.scope:
            raise PermissionDenied(f"this adapter is confined to agent {self.scope}; {what}={given} is another agent's")
        return given

    def confine(self, statement: S, agent_column: Any) -> S:
        """``statement`` limited to the scope's rows by ``agent_column`` (unchanged when unconfined)."""
        if self.scope is None:
            return statement
        return statement.where(agent_column == self.scope)  # type: ignore[return-value]

    def visible_rooms(self) -> sa.Select[uuid.UUID] | None:
        """Ids of the rooms the scope may see, as a subquery; None when unconfined.

        A room is the agent's when one of its participants is an entity of the agent,
        or its world belongs to the agent.
        """
        if self.scope is None:
            return None
        by_participant = (
            sa.select(Participant.room_id)
            .join(Entity, Entity.id == Participant.entity_id)
            .where(Entity.agent_id == self.scope)
        )
        by_world = sa.select(Room.id).join(World, World.id == Room.world_id).where(World.agent_id == self.scope)
        return sa.union(by_participant, by_world).subquery().select()  # type: ignore[return-value]

    def confine_rooms(self, statement: S, room_column: Any) -> S:
        """``statement`` limited to rows whose ``room_column`` is a room the scope may see."""
        rooms = self.visible_rooms()
        if rooms is None:
            return statement
        return statement.where(room_column.in_(rooms))  # type: ignore[return-value]

    def find(self, model: type[M], row_id: Any, statement: sa.Select[Any] | None = None, what: str = "id") -> M | None:
        """The row of ``model`` with ``row_id`` among ``statement``'s (this view's) rows, or None."""
        chosen = statement if statement is not None else sa.select(model)
        return self.session.scalars(chosen.where(model.id == as_uuid(row_id, what))).first()  # type: ignore[attr-defined]

    def one(self, model: type[M], row_id: Any, statement: sa.Select[Any] | None = None) -> M:
        """:meth:`find`, or NotFound naming the table."""
        found = self.find(model, row_id, statement)
        if found is None:
            table = getattr(model, "__tablename__", model.__name__)
            raise NotFound(f"{table} has no row with id {row_id}" + (" for this agent" if self.scope else ""))
        return found

    def add(self, *rows: Any) -> None:
        """Insert ``rows`` in a savepoint: a refused row leaves the call's transaction as it was."""
        with self.session.begin_nested():
            self.session.add_all(rows)
            self.session.flush()

    def remove(self, model: type[Any], row_id: Any, statement: sa.Select[Any], what: str = "id") -> bool:
        """Delete the row :meth:`find` finds; False when there is none."""
        found = self.find(model, row_id, statement, what)
        if found is None:
            return False
        self.session.delete(found)
        self.session.flush()
        return True


def non_empty(value: Any, what: str, longest: int = 255) -> str:
    """``value`` if it is a non-empty string of at most ``longest`` characters, else a ValidationError."""
    if not isinstance(value, str) or not value.strip() or len(value) > longest:
        raise ValidationError(f"{what}={value!r} must be a non-empty string of at most {longest} characters")
    return value


def where_ids(statement: S, *conditions: tuple[Any, Any, str]) -> S:
    """``statement`` with ``column == value`` for each ``(column, value, name)`` whose value is not None."""
    for column, value, name in conditions:
        if value is not None:
            statement = statement.where(column == as_uuid(value, name))  # type: ignore[assignment]
    return statement


@dataclass(frozen=True)
class Page(Generic[M]):
    """One page of a keyset-paginated list: ``items``, and the cursor of the next page (None at the end).

    Iterating a page iterates its items; pass ``next_cursor`` as ``after=`` for the next.
    """

    items: list[M]
    next_cursor: str | None

    def __iter__(self) -> Iterator[M]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> M:
        return self.items[index]


#: The largest page a list call returns.
MAX_LIMIT = 1000


def check_limit(limit: Any) -> int:
    """``limit`` as a page size in 1..1000, or a ValidationError naming it."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit={limit!r} must be an int from 1 to {MAX_LIMIT}")
    return limit


def _encode_cursor(created_at: datetime.datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, row_id = raw.partition("|")
        return datetime.datetime.fromisoformat(moment), uuid.UUID(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError(
            f"after={cursor!r} is not a cursor this adapter returned (use a page's next_cursor)"
        ) from None


def keyset_statement(
    statement: sa.Select[Any], model: Any, *, limit: Any, after: str | None, order: str = "desc"
) -> sa.Select[Any]:
    """``statement`` (a select of ``model``) limited to one page past ``after``, ordered by (created_at, id).

    It fetches one row more than the page, which tells whether a next page exists.
    """
    size = check_limit(limit)
    if order not in ("desc", "asc"):
        raise ValidationError(f"order={order!r} must be 'desc' or 'asc'")
    created, ident = model.created_at, model.id
    if after is not None:
        moment, last = _decode_cursor(after)
        # Spelled out rather than a row-value comparison, which SQL Server lacks.
        if order == "desc":
            past = sa.or_(created < moment, sa.and_(created == moment, ident < last))
        else:
            past = sa.or_(created > moment, sa.and_(created == moment, ident > last))
        statement = statement.where(past)
    sort = (created.desc(), ident.desc()) if order == "desc" else (created.asc(), ident.asc())
    return statement.order_by(*sort).limit(size + 1)


def keyset_page(
    session: Session,
    statement: sa.Select[Any],
    model: Any,
    *,
    limit: Any,
    after: str | None,
    order: Literal["desc", "asc"] = "desc",
) -> Page[Any]:
    """Run ``statement`` (a select of ``model``) as one page ordered by (created_at, id).

    Keyset, not OFFSET: each page costs the same however deep it is, and rows written
    meanwhile neither repeat nor vanish between pages.
    """
    paged = keyset_statement(statement, model, limit=limit, after=after, order=order)
    rows: Sequence[Any] = session.scalars(paged).unique().all()
    size = int(limit)
    items = list(rows[:size])
    cursor = _encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > size else None
    return Page(items, cursor)


E = TypeVar("E", bound=enum.IntEnum)


def as_enum(kind: type[E], value: Any, what: str) -> E:
    """A member of ``kind`` from a member, its int value or its lowercase name.

    Members of other enums and bools are refused (``RoomKind.DM`` is an int too):
    silently taking their integer would store another value.
    """
    if isinstance(value, kind):
        return value
    if isinstance(value, str) and value == value.lower() and value.upper() in kind.__members__:
        return kind[value.upper()]
    if isinstance(value, int) and not isinstance(value, (bool, enum.Enum)):
        try:
            return kind(value)
        except ValueError:
            pass
    names = ", ".join(member.name.lower() for member in kind)
    raise ValidationError(f"{what}={value!r} is not a {kind.__name__}; use one of {names}")


def json_object(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a dict (a JSON object), else a ValidationError naming ``what``."""
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a dict (a JSON object), got {type(value).__name__}")
    return value


def string_list(value: Any, what: str) -> list[str]:
    """``value`` as a list of strings (a lone string is refused: it is not a list of names)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValidationError(f"{what} must be a list of strings, got {type(value).__name__}")
    if not all(isinstance(item, str) for item in value):
        raise ValidationError(f"{what} must be a list of strings")
    return list(value)


def merged(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``changes`` merged in: nested dicts merge, a None value removes its key."""
    result = dict(current)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result
