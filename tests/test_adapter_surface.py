"""The two adapter classes offer the same operations, each documented in its docstring and in docs/adapter.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from dbcore.adapter import AsyncDatabaseAdapter, DatabaseAdapter
from dbcore.adapter.operation import Operation

DOCS = (Path(__file__).resolve().parent.parent / "docs" / "adapter.md").read_text(encoding="utf-8")
LIFECYCLE = ("init", "close", "is_connected", "connection_info", "transaction", "for_agent")


def operations(cls: type) -> dict[str, Operation]:  # type: ignore[type-arg]
    return {name: value for klass in cls.__mro__ for name, value in vars(klass).items() if isinstance(value, Operation)}


def test_both_classes_bind_the_same_functions() -> None:
    sync_ops, async_ops = operations(DatabaseAdapter), operations(AsyncDatabaseAdapter)
    assert sync_ops.keys() == async_ops.keys() and len(sync_ops) >= 1
    assert all(sync_ops[name].function is async_ops[name].function for name in sync_ops)


def test_sync_methods_return_values_and_async_methods_are_coroutines() -> None:
    sync_adapter, async_adapter = DatabaseAdapter("sqlite://"), AsyncDatabaseAdapter("sqlite://")
    for name in [*operations(DatabaseAdapter), *LIFECYCLE[:4]]:
        assert not inspect.iscoroutinefunction(getattr(sync_adapter, name)), name
        assert inspect.iscoroutinefunction(getattr(async_adapter, name)), name


def test_every_method_has_a_docstring_and_a_row_in_the_docs() -> None:
    documented = set(re.findall(r"^\| `(\w+)\(", DOCS, flags=re.MULTILINE))
    for name, op in operations(DatabaseAdapter).items():
        assert (op.function.__doc__ or "").strip(), f"{name} has no docstring"
        assert getattr(DatabaseAdapter("sqlite://"), name).__doc__ == op.function.__doc__
    missing = sorted((set(operations(DatabaseAdapter)) | set(LIFECYCLE)) - documented)
    assert not missing, f"docs/adapter.md has no table row for {missing}"
