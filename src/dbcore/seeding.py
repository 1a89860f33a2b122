"""Idempotent seeding from each model's class-level ``seed_list``.

``seed(session)`` walks the mapped classes of a registry in foreign-key order
(``metadata.sorted_tables``), inserts the seed rows whose id is missing and
updates the columns whose value differs. A second run finds nothing to do and
sends no INSERT or UPDATE. It flushes; the caller commits.

While it runs, ``session.info["dbcore.seeding"]`` is True, so a write guard
(system tables) can recognise the seeding session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm import registry as Registry

from dbcore.base import Base, validate_seed_list
from dbcore.errors import ValidationError
from dbcore.Mixins import INCLUDE_DELETED
from dbcore.types import GUID

__all__ = ["seed", "SeedReport", "SeedCounts", "SEEDING_INFO_KEY"]

#: ``session.info`` key set to True while :func:`seed` runs.
SEEDING_INFO_KEY = "dbcore.seeding"


@dataclass
class SeedCounts:
    """Seed rows of one table: inserted, updated and already up to date."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class SeedReport:
    """What :func:`seed` did, in total and per table (in the order tables were seeded)."""

    tables: dict[str, SeedCounts] = field(default_factory=dict)

    @property
    def inserted(self) -> int:
        return sum(c.inserted for c in self.tables.values())

    @property
    def updated(self) -> int:
        return sum(c.updated for c in self.tables.values())

    @property
    def unchanged(self) -> int:
        return sum(c.unchanged for c in self.tables.values())

    @property
    def writes(self) -> int:
        return self.inserted + self.updated


def _seeded_classes(models: Iterable[type] | None, registry: Registry | None) -> list[type]:
    if models is None:
        if registry is None:
            registry = Base.registry
        models = [mapper.class_ for mapper in registry.mappers]
    classes = [cls for cls in models if getattr(cls, "seed_list", None)]
    for cls in classes:
        if not isinstance(getattr(cls, "__table__", None), sa.Table):
            raise ValidationError(f"{cls.__name__} has a seed_list but is not mapped to a table")

    def order(cls: type) -> tuple[int, str]:
        table: sa.Table = cls.__table__  # type: ignore[attr-defined]
        sorted_tables = table.metadata.sorted_tables
        return sorted_tables.index(table), cls.__name__

    return sorted(classes, key=order)


def _coerce(cls: type, table: sa.Table, row: Mapping[str, Any]) -> dict[str, Any]:
    mapper: sa.orm.Mapper[Any] = sa.inspect(cls)
    values: dict[str, Any] = {}
    for key, value in row.items():
        if key not in mapper.column_attrs:
            raise ValidationError(f"{cls.__name__}.seed_list row {row.get('id')!r} names unknown column {key!r}")
        column = mapper.column_attrs[key].columns[0]
        if isinstance(column.type, GUID) and isinstance(value, str):
            try:
                value = uuid.UUID(value)
            except ValueError:
                raise ValidationError(
                    f"{cls.__name__}.seed_list row {row.get('id')!r}: {key}={value!r} is not a UUID"
                ) from None
        values[key] = value
    return values


def _differs(current: Any, wanted: Any) -> bool:
    try:
        return bool(current != wanted)
    except Exception:  # e.g. numpy arrays: compare element-wise
        return not np.array_equal(np.asarray(current), np.asarray(wanted))


def seed(
    session: Session,
    *,
    models: Iterable[type] | None = None,
    registry: Registry | None = None,
) -> SeedReport:
    """Apply every ``seed_list`` of ``models`` (default: all classes of ``registry``, default dbcore's Base).

    Rows are matched by id. Soft-deleted rows count as present. Returns a
    :class:`SeedReport`; the session is flushed, not committed.
    """
    report = SeedReport()
    previous = session.info.get(SEEDING_INFO_KEY)
    session.info[SEEDING_INFO_KEY] = True
    try:
        for cls in _seeded_classes(models, registry):
            validate_seed_list(cls)
            table: sa.Table = cls.__table__  # type: ignore[attr-defined]
            counts = report.tables.setdefault(table.name, SeedCounts())
            rows = [_coerce(cls, table, row) for row in cls.seed_list]  # type: ignore[attr-defined]
            ids = [row["id"] for row in rows]
            if len(set(ids)) != len(ids):
                raise ValidationError(f"{cls.__name__}.seed_list repeats an id")
            id_column: Any = cls.id  # type: ignore[attr-defined]
            statement: sa.Select[Any] = (
                sa.select(cls).where(id_column.in_(ids)).execution_options(**{INCLUDE_DELETED: True})
            )
            existing: dict[Any, Any] = {obj.id: obj for obj in session.scalars(statement)}
            for values in rows:
                obj = existing.get(values["id"])
                if obj is None:
                    session.add(cls(**values))
                    counts.inserted += 1
                    continue
                changed = False
                for key, wanted in values.items():
                    if _differs(getattr(obj, key), wanted):
                        setattr(obj, key, wanted)
                        changed = True
                if changed:
                    counts.updated += 1
                else:
                    counts.unchanged += 1
            session.flush()
    finally:
        if previous is None:
            session.info.pop(SEEDING_INFO_KEY, None)
        else:
            session.info[SEEDING_INFO_KEY] = previous
    return report
