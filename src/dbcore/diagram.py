"""A Mermaid ``erDiagram`` of SQLAlchemy metadata: ``dbcore schema --mermaid`` and docs/schema.md.

Built on the metadata alone (no database, nothing from dbcore), so the text is the
same on every machine: tables sorted by name, columns in table order, one
relationship line per foreign key, sorted.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import TypeEngine

__all__ = ["mermaid"]

#: Lowercased type class names (any class in the type's MRO) -> the word shown in the diagram.
_TYPE_WORDS = {
    "guid": "uuid",
    "uuid": "uuid",
    "sqlenum": "enum",
    "enum": "enum",
    "vector": "vector",
    "utcdatetime": "datetime",
    "datetime": "datetime",
    "timestamp": "datetime",
    "date": "date",
    "time": "time",
    "interval": "interval",
    "boolean": "boolean",
    "smallinteger": "integer",
    "integer": "integer",
    "biginteger": "integer",
    "string": "string",
    "unicode": "string",
    "varchar": "string",
    "nvarchar": "string",
    "char": "string",
    "nchar": "string",
    "text": "text",
    "unicodetext": "text",
    "clob": "text",
    "json": "json",
    "jsonb": "json",
    "float": "float",
    "double": "float",
    "real": "float",
    "numeric": "decimal",
    "decimal": "decimal",
    "largebinary": "bytes",
    "binary": "bytes",
    "varbinary": "bytes",
    "blob": "bytes",
    "bytea": "bytes",
    "array": "array",
}

_NOT_A_WORD = re.compile(r"[^A-Za-z0-9_]")


def _type_word(type_: TypeEngine[object]) -> str:
    """``uuid``, ``string``, ``vector``...: the first class of the type's MRO with a known word, else its own name."""
    for cls in type(type_).__mro__:
        word = _TYPE_WORDS.get(cls.__name__.lower())
        if word is not None:
            return word
    return _NOT_A_WORD.sub("", type(type_).__name__.lower()) or "type"


def _comment(text: str) -> str:
    """A Mermaid attribute comment: one line, its double quotes made single."""
    return '"' + " ".join(text.replace('"', "'").split()) + '"'


def _attribute(column: sa.Column[object]) -> str:
    keys = [key for key, present in (("PK", column.primary_key), ("FK", bool(column.foreign_keys))) if present]
    parts = [_type_word(column.type), column.name]
    if keys:
        parts.append(", ".join(keys))
    if column.comment:
        parts.append(_comment(column.comment))
    return " ".join(parts)


def _referred_table(constraint: sa.ForeignKeyConstraint) -> str:
    """The parent table's name; from the key's text when that table is in no metadata given."""
    try:
        return constraint.referred_table.name
    except (sa_exc.NoReferencedTableError, sa_exc.NoReferencedColumnError, sa_exc.InvalidRequestError):
        return constraint.elements[0].target_fullname.split(".")[-2]


def _relationship(table: sa.Table, constraint: sa.ForeignKeyConstraint) -> tuple[str, str, str, str]:
    """(child, parent, key columns, the Mermaid line): sorted on the first three."""
    columns = list(constraint.columns)
    # Every child row has a parent when the key is NOT NULL; a nullable key may point nowhere.
    parent_side = "o|" if any(column.nullable for column in columns) else "||"
    parent = _referred_table(constraint)
    label = ", ".join(column.name for column in columns)
    return table.name, parent, label, f'{table.name} }}o--{parent_side} {parent} : "{label}"'


def mermaid(*metadata: sa.MetaData) -> str:
    """The tables of ``metadata`` as a Mermaid ``erDiagram`` (text ending in a newline).

    A table name met in two ``MetaData`` is drawn once, from the first.
    """
    tables: dict[str, sa.Table] = {}
    for meta in metadata:
        for table in meta.tables.values():
            tables.setdefault(table.name, table)
    lines = ["erDiagram"]
    relationships: list[tuple[str, str, str, str]] = []
    for name in sorted(tables):
        table = tables[name]
        lines.append(f"    {name} {{")
        lines.extend(f"        {_attribute(column)}" for column in table.columns)
        lines.append("    }")
        relationships.extend(_relationship(table, constraint) for constraint in table.foreign_key_constraints)
    lines.extend(f"    {line}" for *_, line in sorted(relationships))
    return "\n".join(lines) + "\n"
