"""Model checks: the relational rules of docs/patterns.md, applied to a MetaData.

Rules, each reported as ``table.column: problem``:

- every column that is neither primary nor foreign key has a comment;
- every foreign key column is indexed (its own index, or first column of an
  index, unique constraint or primary key);
- primary key columns use ``PK_TYPE``;
- enumerations are stored as integers (``dbcore.SqlEnum``), never ``sa.Enum``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator, TypeEngine

from dbcore.errors import ValidationError
from dbcore.types import PK_TYPE

__all__ = ["check_models", "assert_models_ok"]


def _type_name(type_: TypeEngine[object]) -> str:
    return type(type_).__name__


def _is_pk_type(type_: TypeEngine[object]) -> bool:
    return isinstance(type_, PK_TYPE)


def _is_string_enum(type_: TypeEngine[object]) -> bool:
    if getattr(type_, "is_integer_enum", False):
        return False
    if isinstance(type_, sa.Enum):
        return True
    if isinstance(type_, TypeDecorator):
        return isinstance(type_.impl_instance, sa.Enum)
    return False


def _first_columns(table: sa.Table) -> set[str]:
    """Columns that lead an index, a unique constraint or the primary key."""
    leading: set[str] = set()
    for index in table.indexes:
        columns = list(index.columns)
        if columns:
            leading.add(columns[0].name)
    for constraint in table.constraints:
        if isinstance(constraint, (sa.UniqueConstraint, sa.PrimaryKeyConstraint)):
            columns = list(constraint.columns)
            if columns:
                leading.add(columns[0].name)
    leading.update(column.name for column in table.columns if column.index or column.unique)
    return leading


def check_models(metadata: sa.MetaData) -> list[str]:
    """Every rule violation in ``metadata``, as ``table.column: problem`` lines; empty when all is well."""
    problems: list[str] = []
    for table in metadata.sorted_tables:
        indexed = _first_columns(table)
        for column in table.columns:
            where = f"{table.name}.{column.name}"
            is_fk = bool(column.foreign_keys)
            if column.primary_key and not _is_pk_type(column.type):
                problems.append(f"{where}: primary key is {_type_name(column.type)}, use dbcore.PK_TYPE")
            if is_fk and column.name not in indexed:
                problems.append(f"{where}: foreign key has no index, add index=True")
            if not column.primary_key and not is_fk and not (column.comment or "").strip():
                problems.append(f"{where}: column has no comment, add comment=...")
            if _is_string_enum(column.type):
                problems.append(f"{where}: enum stored as VARCHAR, use dbcore.SqlEnum")
    return problems


def assert_models_ok(metadata: sa.MetaData) -> None:
    """Raise :class:`ValidationError` listing every problem :func:`check_models` finds."""
    problems = check_models(metadata)
    if problems:
        listing = "\n  ".join(problems)
        raise ValidationError(f"{len(problems)} model problem(s):\n  {listing}")
