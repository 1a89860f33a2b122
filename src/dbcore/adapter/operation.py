"""One implementation, two adapters: an :class:`Operation` is a method of both.

``create_agent = Operation(agents.create_agent)`` in the shared class body gives
:class:`~dbcore.adapter.DatabaseAdapter` a method that runs the function in a
session and returns its result, and :class:`~dbcore.adapter.AsyncDatabaseAdapter` a
coroutine method that runs the *same* function through ``AsyncSession.run_sync``. The
overloaded ``__get__`` tells type checkers which of the two each class has.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from dbcore.adapter.context import Context

if TYPE_CHECKING:
    from dbcore.adapter.facade import AsyncDatabaseAdapter, DatabaseAdapter

__all__ = ["Operation", "bind", "reads"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Operation(Generic[P, T]):
    """A function of a :class:`Context` exposed as a method of both adapters.

    ``writes=False`` marks an operation that only reads: it runs in a read-only session
    (on SQLite it then reads beside writers instead of queueing for the write lock).
    """

    def __init__(self, function: Callable[Concatenate[Context, P], T], *, writes: bool = True) -> None:
        self.function = function
        self.writes = writes
        self.name = function.__name__
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, adapter: None, owner: type) -> Operation[P, T]: ...
    @overload
    def __get__(self, adapter: AsyncDatabaseAdapter, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, adapter: DatabaseAdapter, owner: type) -> Callable[P, T]: ...
    def __get__(self, adapter: Any, owner: type) -> Any:
        if adapter is None:
            return self
        return adapter._bind(self)


def reads(function: F) -> F:
    """Mark an operation function as one that only reads (see :class:`Operation`)."""
    function.__dbcore_reads__ = True  # type: ignore[attr-defined]
    return function


def bind(function: Callable[Concatenate[Context, P], T]) -> Operation[P, T]:
    """The class-body form: ``get_agent = bind(agents.get_agent)``."""
    return Operation(function, writes=not getattr(function, "__dbcore_reads__", False))
