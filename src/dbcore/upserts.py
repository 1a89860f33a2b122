"""Insert-or-update of many rows: ``upsert(session, Model, rows, key=...)``.

Each dialect's own statement, in chunks of 500 rows: ``INSERT ... ON CONFLICT``
on PostgreSQL and SQLite, ``INSERT ... ON DUPLICATE KEY UPDATE`` on MariaDB/MySQL and
``MERGE ... WITH (HOLDLOCK)`` on SQL Server (SQLAlchemy has no MERGE construct: :class:`Merge`).
Every row is checked before SQL is sent, and the statements run in a savepoint of the
caller's session: a refused call leaves nothing behind while the caller's transaction
goes on. Rows are written in input order, so of two rows with one key the later wins.

A NULL in a key column never matches: such a row is always inserted (PostgreSQL,
SQLite and MariaDB let unique constraints hold many NULLs; SQL Server refuses the
second one). ``on_saved`` hooks do not run, as for any Core statement.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from dbcore import security
from dbcore.DB_Memories import Memory, MemoryEmbedding
from dbcore.errors import ConfigurationError, DuplicateKeyError, PermissionDenied, ValidationError
from dbcore.session import ReadOnlySession
from dbcore.types import new_uuid, value_check

__all__ = ["upsert", "upsert_statement", "Merge"]

_CHUNK = 500
# Their writes owe the embedding version counter and the vector outbox: add_memories keeps both.
_REFUSED = {Memory.__table__: "Memory", MemoryEmbedding.__table__: "MemoryEmbedding"}
# Dialects whose default collations compare text without case (and trailing spaces or accents).
_FOLDING_DIALECTS = ("mysql", "mariadb", "mssql")
_ON_DUPLICATE_KEY = ("mysql", "mariadb")


@dataclass(frozen=True)
class _Target:
    """The table a call writes, its columns by ORM attribute name, and the key and update columns (column keys)."""

    model: type
    table: sa.Table
    by_attribute: dict[str, sa.Column[Any]]
    key: tuple[str, ...]
    update: tuple[str, ...] | None


@dataclass(frozen=True)
class _Row:
    """One row to write: column values (defaults filled in), the columns the caller gave, its place, its id."""

    values: dict[str, Any]
    given: frozenset[str]
    position: int
    id: uuid.UUID


class _RowContext:
    """Stands in for the execution context a column default may read (``get_current_parameters()``)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.current_parameters = values

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        return self.current_parameters


def upsert(
    session: Session,
    model: type,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str | Sequence[str] = "id",
    update: Sequence[str] | None = None,
) -> list[uuid.UUID]:
    """Insert each row of ``model`` attributes, or update the row that has its ``key`` already.

    An existing row gets the other columns the row gives (``update``: only those;
    ``update=()``: nothing, "insert, ignore existing"), ``updated_at`` refreshed; its
    ``id`` never changes. Every row must be insertable (NOT NULL columns given): the
    database checks that before it looks for a conflict. Returns the id of each row's
    table row, in input order. The session is flushed first; objects of ``model`` it
    holds for those ids are expired.
    """
    target = _target(model, key, update)
    _check_writable(session, target)
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise ValidationError(f"upsert: rows must be a list of dicts, got {type(rows).__name__}")
    prepared = [_prepare(target, item, position) for position, item in enumerate(rows)]
    if not prepared:
        return []
    session.flush()
    mapper: Mapper[Any] = sa.inspect(model)
    with session.begin_nested():
        connection = session.connection(bind_arguments={"mapper": mapper})
        ids = [
            found for run in _runs(connection.dialect, target, prepared) for found in _write(connection, target, run)
        ]
    for obj_id in set(ids):
        obj = session.identity_map.get(mapper.identity_key_from_primary_key((obj_id,)))
        if obj is not None:
            session.expire(obj)
    return ids


# --- checks, before anything is sent --------------------------------------------------


def _target(model: type, key: str | Sequence[str], update: Sequence[str] | None) -> _Target:
    mapper: Mapper[Any] | None = sa.inspect(model, raiseerr=False)
    if not isinstance(mapper, Mapper):
        raise ValidationError(f"upsert needs a mapped model class, got {model!r}")
    table = mapper.local_table
    if not isinstance(table, sa.Table) or mapper.inherits is not None:
        raise ValidationError(f"upsert writes one table; {model.__name__} inherits its table: write it with the ORM")
    if table in _REFUSED:
        raise ValidationError(
            f"upsert does not write {table.name}: its writes must bump the embedding version counter and the "
            "vector outbox; use dbcore.memories.add_memories (and the ORM to change a memory)"
        )
    if [column.key for column in table.primary_key.columns] != ["id"]:
        raise ValidationError(f"upsert returns ids: {table.name} needs the primary key id (BaseMixin)")
    by_attribute = {
        prop.key: column
        for prop in mapper.column_attrs
        if len(prop.columns) == 1 and isinstance(column := prop.columns[0], sa.Column) and column.table is table
    }
    target = _Target(model, table, by_attribute, (), None)
    key_columns = _column_keys(target, key, "key")
    update_columns = None if update is None else _column_keys(target, update, "update")
    if not key_columns:
        raise ValidationError(f"upsert into {table.name}: key names no column; pass key='id' or a unique column")
    if update_columns is not None and "id" in update_columns and key_columns != ("id",):
        raise ValidationError(f"upsert into {table.name}: update may not name id; an existing row keeps its id")
    _check_unique(table, key_columns)
    return _Target(model, table, by_attribute, key_columns, update_columns)


def _column_keys(target: _Target, names: str | Sequence[str], what: str) -> tuple[str, ...]:
    listed = (names,) if isinstance(names, str) else names
    if not isinstance(listed, Sequence) or not all(isinstance(name, str) for name in listed):
        raise ValidationError(f"upsert: {what} must be an attribute name or a list of them, got {names!r}")
    return tuple(dict.fromkeys(_column(target, name).key for name in listed))


def _column(target: _Target, name: Any) -> sa.Column[Any]:
    column = target.by_attribute.get(name)
    if column is not None:
        return column
    table = target.table
    attribute = next((attr for attr, col in target.by_attribute.items() if col.name == name), None)
    hint = f"; its attribute is {attribute}" if attribute else ""
    raise ValidationError(f"{table.name}.{name} is not a column of {target.model.__name__}{hint}")


def _unique_sets(table: sa.Table) -> list[frozenset[str]]:
    """The column sets the table holds unique: primary key, unique constraints, whole-table unique indexes."""
    sets = [frozenset(column.key for column in table.primary_key.columns)]
    sets += [
        frozenset(column.key for column in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, sa.UniqueConstraint)
    ]
    sets += [
        frozenset(column.key for column in index.columns)
        for index in table.indexes
        if index.unique
        and len(index.expressions) == len(index.columns)
        and not any(value is not None for name, value in index.dialect_kwargs.items() if name.endswith("_where"))
    ]
    return sets


def _check_unique(table: sa.Table, key: tuple[str, ...]) -> None:
    sets = _unique_sets(table)
    if frozenset(key) not in sets:
        known = ", ".join("(" + ", ".join(sorted(found)) + ")" for found in sets)
        raise ValidationError(
            f"upsert into {table.name}: no unique constraint or primary key covers ({', '.join(key)}), so existing "
            f"rows cannot be found by it; use one of {known} or add a UniqueConstraint"
        )


def _check_writable(session: Session, target: _Target) -> None:
    if isinstance(session, ReadOnlySession):
        raise PermissionDenied(
            f"this session is read-only and cannot upsert into {target.table.name}; open it without read_only=True"
        )
    if getattr(target.model, "__system__", False):
        security.check_connection_write(target.table.name, session, {})


def _prepare(target: _Target, item: Any, position: int) -> _Row:
    table = target.table
    if not isinstance(item, Mapping):
        raise ValidationError(f"upsert into {table.name}: row #{position} must be a dict, got {type(item).__name__}")
    values: dict[str, Any] = {}
    for name, value in item.items():
        column = _column(target, name)
        check = value_check(column.type)
        if check is not None:
            check(value)
        values[column.key] = value
    if values.get("id") is None:
        values.pop("id", None)
    wanted = [name for name in (*target.key, *(target.update or ())) if name != "id" and name not in values]
    if wanted:
        names = ", ".join(f"{table.name}.{table.c[name].name}" for name in wanted)
        raise ValidationError(f"upsert into {table.name}: row #{position} lacks {names} (named by key or update)")
    given = frozenset(values)
    values.setdefault("id", new_uuid())
    _fill_defaults(table, values)
    row_id = values["id"]
    return _Row(values, given, position, row_id if isinstance(row_id, uuid.UUID) else uuid.UUID(row_id))


def _fill_defaults(table: sa.Table, values: dict[str, Any]) -> None:
    """The Python-side column defaults the ORM would apply to an insert (SQL-expression defaults stay Core's)."""
    for column in table.columns:
        default = column.default
        if column.key in values or default is None:
            continue
        if default.is_scalar:
            values[column.key] = default.arg  # type: ignore[attr-defined]
        elif default.is_callable:
            values[column.key] = default.arg(_RowContext(values))  # type: ignore[attr-defined]


# --- the statements ------------------------------------------------------------------


def _fold(value: Any) -> Any:
    """Text as a case- and accent-insensitive collation compares it (utf8mb4_unicode_ci, SQL Server's default)."""
    if not isinstance(value, str):
        return value
    bare = "".join(char for char in unicodedata.normalize("NFKD", value) if not unicodedata.combining(char))
    return bare.casefold().rstrip(" ")


def _normal(dialect: Dialect, column: sa.Column[Any], value: Any) -> Any:
    """``value`` as the database compares it, for matching rows it returns with rows given."""
    if isinstance(value, str):
        try:
            if column.type.python_type is uuid.UUID:
                return uuid.UUID(value)
        except NotImplementedError:
            pass
        if dialect.name in _FOLDING_DIALECTS:
            return _fold(value)
    return value


def _key_of(dialect: Dialect, table: sa.Table, columns: Sequence[str], values: Mapping[Any, Any]) -> tuple[Any, ...]:
    return tuple(_normal(dialect, table.c[name], values[name]) for name in columns)


def _runs(dialect: Dialect, target: _Target, rows: list[_Row]) -> Iterator[list[_Row]]:
    """Consecutive rows that share one statement: the same given columns, no key twice, at most 500.

    With no key twice a statement touches each row once, whatever form the driver sends
    (PostgreSQL refuses a multi-row INSERT ... ON CONFLICT that updates one row twice).
    """
    run: list[_Row] = []
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        key = _key_of(dialect, target.table, target.key, row.values)
        if run and (row.given != run[0].given or key in seen or len(run) == _CHUNK):
            yield run
            run, seen = [], set()
        run.append(row)
        if None not in key:
            seen.add(key)
    if run:
        yield run


def _set_columns(target: _Target, given: frozenset[str]) -> tuple[str, ...]:
    chosen = (
        target.update if target.update is not None else tuple(name for name in target.table.c.keys() if name in given)
    )
    return tuple(name for name in chosen if name not in target.key and name != "id")


def _stamps(table: sa.Table, set_columns: tuple[str, ...]) -> dict[str, Any]:
    """``onupdate`` values (``updated_at``) for the columns an update does not set itself."""
    if not set_columns:
        return {}
    stamps: dict[str, Any] = {}
    for column in table.columns:
        onupdate = column.onupdate
        if onupdate is None or column.key in set_columns:
            continue
        if onupdate.is_callable:
            stamps[column.key] = onupdate.arg(_RowContext({}))  # type: ignore[attr-defined]
        elif onupdate.is_scalar or onupdate.is_clause_element:
            stamps[column.key] = onupdate.arg  # type: ignore[attr-defined]
    return stamps


def upsert_statement(
    dialect: Dialect,
    table: sa.Table,
    *,
    columns: Sequence[str],
    key: Sequence[str],
    set_columns: Sequence[str],
    stamps: Mapping[str, Any] | None = None,
) -> Executable:
    """The statement upserting rows of ``columns`` (column keys) into ``table`` on ``dialect``, for executemany.

    A conflict on ``key`` updates ``set_columns`` from the row and ``stamps`` to their
    values; with no ``set_columns`` the existing row is left as it is.
    """
    stamps = dict(stamps or {})
    name = dialect.name
    if name in ("postgresql", "sqlite"):
        insert = postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)
        if not set_columns:
            return insert.on_conflict_do_nothing(index_elements=list(key))
        updates = {column: insert.excluded[column] for column in set_columns}
        return insert.on_conflict_do_update(index_elements=list(key), set_={**updates, **stamps})
    if name in _ON_DUPLICATE_KEY:
        dup = mysql.insert(table)
        if not set_columns:
            return dup.on_duplicate_key_update({"id": table.c.id})  # a no-op: the row is left as it is
        return dup.on_duplicate_key_update({**{column: dup.inserted[column] for column in set_columns}, **stamps})
    if name == "mssql":
        return Merge(table, columns, key, set_columns, stamps)
    raise ConfigurationError(f"upsert has no statement for the {name} dialect; dbcore supports {_SUPPORTED}")


_SUPPORTED = "postgresql, sqlite, mariadb/mysql and mssql"


class Merge(Executable, ClauseElement):
    """SQL Server's ``MERGE`` for one row of bound values (executemany), compiled for mssql only."""

    inherit_cache = False

    def __init__(
        self,
        table: sa.Table,
        columns: Sequence[str],
        key: Sequence[str],
        set_columns: Sequence[str],
        stamps: Mapping[str, Any],
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.key = tuple(key)
        self.set_columns = tuple(set_columns)
        self.stamps = dict(stamps)


@compiles(Merge)
def _merge_elsewhere(element: Merge, compiler: SQLCompiler, **kw: Any) -> str:
    raise sa.exc.CompileError(f"MERGE is compiled for SQL Server only, not {compiler.dialect.name}")


@compiles(Merge, "mssql")
def _compile_merge(element: Merge, compiler: SQLCompiler, **kw: Any) -> str:
    """Every fragment is a SQLAlchemy element compiled here (identifiers quoted, values bound); only keywords join them."""
    table = element.table
    target = table.alias("target")
    source = sa.table("source", *(sa.column(table.c[column].name) for column in element.columns))

    def listed(clauses: Iterable[ClauseElement]) -> str:
        return ", ".join(compiler.process(clause, **kw) for clause in clauses)

    def pairs(columns: Iterable[str]) -> list[ClauseElement]:
        return [target.c[column] == source.c[table.c[column].name] for column in columns]

    names = ", ".join(compiler.preparer.quote(table.c[column].name) for column in element.columns)
    stamps = [
        target.c[column]
        == (value if isinstance(value, ClauseElement) else sa.bindparam(None, value, type_=table.c[column].type))
        for column, value in element.stamps.items()
    ]
    values = listed(sa.bindparam(column, type_=table.c[column].type) for column in element.columns)
    lines = [
        " ".join(("MERGE INTO", compiler.preparer.format_table(table), "WITH (HOLDLOCK) AS target")),
        "".join(("USING (VALUES (", values, ")) AS source (", names, ")")),
        " ".join(("ON", " AND ".join(compiler.process(clause, **kw) for clause in pairs(element.key)))),
    ]
    updates = [*pairs(element.set_columns), *stamps]
    if updates:
        lines.append(" ".join(("WHEN MATCHED THEN UPDATE SET", listed(updates))))
    inserted = listed(source.c[table.c[column].name] for column in element.columns)
    lines.append("".join(("WHEN NOT MATCHED THEN INSERT (", names, ") VALUES (", inserted, ");")))
    return "\n".join(lines)


# --- writing and reading back ------------------------------------------------------------


def _write(connection: Connection, target: _Target, run: list[_Row]) -> list[uuid.UUID]:
    given = run[0].given
    set_columns = _set_columns(target, given)
    statement = upsert_statement(
        connection.dialect,
        target.table,
        columns=list(run[0].values),
        key=target.key,
        set_columns=set_columns,
        stamps=_stamps(target.table, set_columns),
    )
    if connection.dialect.name in _ON_DUPLICATE_KEY:
        _refuse_other_key_hits(connection, target, run)
    params = [row.values for row in run]
    if isinstance(statement, mysql.Insert):
        # One multi-row INSERT, as the drivers' executemany would send, which binds nothing after VALUES.
        connection.execute(statement.values(params))
    else:
        connection.execute(statement, params)
    return _ids(connection, target, run)


def _matching(table: sa.Table, columns: Sequence[str], values: list[tuple[Any, ...]]) -> sa.ColumnElement[bool]:
    """Rows whose ``columns`` hold one of ``values`` (no tuple IN: SQL Server has none)."""
    if len(columns) == 1:
        return table.c[columns[0]].in_([value[0] for value in values])
    return sa.or_(*(sa.and_(*(table.c[c] == v for c, v in zip(columns, value, strict=True))) for value in values))


def _ids(connection: Connection, target: _Target, run: list[_Row]) -> list[uuid.UUID]:
    """Each row's id: its own when it was keyed by id or has a NULL key, else the id the key now finds."""
    table, key, dialect = target.table, target.key, connection.dialect
    looked_up = [row for row in run if key != ("id",) and all(row.values[name] is not None for name in key)]
    positions = {row.position for row in looked_up}
    if not looked_up:
        return [row.id for row in run]
    wanted = list(dict.fromkeys(tuple(row.values[name] for name in key) for row in looked_up))
    statement = sa.select(table.c.id, *(table.c[name] for name in key)).where(_matching(table, key, wanted))
    found = {_key_of(dialect, table, key, found._mapping): found.id for found in connection.execute(statement)}
    ids: list[uuid.UUID] = []
    for row in run:
        row_id = found.get(_key_of(dialect, table, key, row.values), None) if row.position in positions else row.id
        if row_id is None:
            raise DuplicateKeyError(
                f"upsert into {table.name}: row #{row.position} left no row with its key ({', '.join(key)}); "
                "another unique key of the table took it",
                dialect=dialect.name,
            )
        ids.append(row_id)
    return ids


def _refuse_other_key_hits(connection: Connection, target: _Target, run: list[_Row]) -> None:
    """Refuse rows whose other unique values belong to a row with another key.

    ON DUPLICATE KEY UPDATE updates the row of whichever unique key collides first,
    where PostgreSQL and SQLite raise: without this, such a row would change another row.
    """
    table, key, dialect = target.table, target.key, connection.dialect
    for unique in _unique_sets(table):
        columns = sorted(unique)
        if unique == frozenset(key):
            continue
        rows = [row for row in run if all(c in row.given and row.values[c] is not None for c in columns)]
        if not rows:
            continue
        holders: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        statement = sa.select(*(table.c[c] for c in (*columns, *key))).where(
            _matching(table, columns, [tuple(row.values[c] for c in columns) for row in rows])
        )
        for found in connection.execute(statement):
            holders[_key_of(dialect, table, columns, found._mapping)] = _key_of(dialect, table, key, found._mapping)
        for row in rows:
            unique_values = _key_of(dialect, table, columns, row.values)
            row_key = _key_of(dialect, table, key, row.values)
            holder = holders.get(unique_values)
            if holder is not None and (holder != row_key or None in row_key):
                _other_key_hit(table, row, columns, dialect)
            holders[unique_values] = row_key


def _other_key_hit(table: sa.Table, row: _Row, columns: list[str], dialect: Dialect) -> None:
    names = ", ".join(table.c[c].name for c in columns)
    raise DuplicateKeyError(
        f"upsert into {table.name}: row #{row.position} repeats ({names}) of a row with another key; "
        f"{dialect.name}'s ON DUPLICATE KEY UPDATE would change that row, so nothing was written",
        dialect=dialect.name,
    )
