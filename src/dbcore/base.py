"""The declarative base: naming convention, type map, seed-list validation.

``Base`` holds dbcore's own tables. Other model sets (tests, downstream
projects) get the same conventions without sharing dbcore's metadata::

    class MyBase(BaseModel, DeclarativeBase):
        metadata = make_metadata()
        type_annotation_map = TYPE_ANNOTATION_MAP

or ``MyBase = make_base("MyBase")``.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.base import _NONE_NAME
from sqlalchemy.sql.schema import Constraint, Index

from dbcore.errors import ValidationError
from dbcore.types import JSON, PK_TYPE, Boolean, Integer, String, UTCDateTime

__all__ = [
    "Base",
    "BaseModel",
    "MAX_IDENTIFIER_LENGTH",
    "NAMING_CONVENTION",
    "SEED_ID_PATTERN",
    "TYPE_ANNOTATION_MAP",
    "make_base",
    "make_metadata",
    "validate_seed_list",
]

#: Longest constraint/index name we generate; PostgreSQL allows 63, MariaDB 64.
MAX_IDENTIFIER_LENGTH = 60

#: ``FFFFFFFF-FFFF-FFFF-XXXX-FFFFFFFFFFFF``: seed rows differ only in the fourth group.
# XXXX is 0000-00FF or 8100-FFFF: MariaDB's UUID type refuses these ids with 0100-80FF there.
SEED_ID_PATTERN = re.compile(
    r"FFFFFFFF-FFFF-FFFF-(?:00[0-9A-F]{2}|8[1-9A-F][0-9A-F]{2}|[9A-F][0-9A-F]{3})-FFFFFFFFFFFF", re.IGNORECASE
)


def limit_identifier(name: str, limit: int = MAX_IDENTIFIER_LENGTH) -> str:
    """``name`` itself when short enough, else its head plus an 8-hex-digit hash of the whole name."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]
    return f"{name[: limit - 9]}_{digest}"


def _column_names(constraint: Constraint | Index) -> list[str]:
    return [column.name for column in getattr(constraint, "columns", ())]


def _given_name(constraint: Constraint | Index) -> str | None:
    name = constraint.name
    if name is None or name is _NONE_NAME:
        return None
    return str(name)


def _ix(constraint: Index, table: sa.Table) -> str:
    columns = _column_names(constraint) or [_given_name(constraint) or "expr"]
    return limit_identifier(f"ix_{table.name}_{'_'.join(columns)}")


def _uq(constraint: Constraint, table: sa.Table) -> str:
    return limit_identifier(f"uq_{table.name}_{'_'.join(_column_names(constraint))}")


def _ck(constraint: Constraint, table: sa.Table) -> str:
    label = _given_name(constraint) or "_".join(_column_names(constraint))
    if not label:
        text = str(getattr(constraint, "sqltext", ""))
        label = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]
    return limit_identifier(f"ck_{table.name}_{label}")


def _fk(constraint: Constraint, table: sa.Table) -> str:
    # The target's name as written, so a key to a table declared later (use_alter) works too.
    referred = constraint.elements[0].target_fullname.split(".")[-2]  # type: ignore[attr-defined]
    return limit_identifier(f"fk_{table.name}_{'_'.join(_column_names(constraint))}_{referred}")


def _pk(constraint: Constraint, table: sa.Table) -> str:
    return limit_identifier(f"pk_{table.name}")


#: Deterministic names for every index and constraint, identical on every dialect.
NAMING_CONVENTION: Mapping[str, Any] = {
    "dbcore_ix": _ix,
    "dbcore_uq": _uq,
    "dbcore_ck": _ck,
    "dbcore_fk": _fk,
    "dbcore_pk": _pk,
    "ix": "%(dbcore_ix)s",
    "uq": "%(dbcore_uq)s",
    "ck": "%(dbcore_ck)s",
    "fk": "%(dbcore_fk)s",
    "pk": "%(dbcore_pk)s",
}

#: Python annotation -> column type, so ``Mapped[uuid.UUID]`` means PK_TYPE everywhere.
#: ``str``, ``bool``, ``int`` and JSON get dbcore's checked types, with the DDL of sa.String,
#: sa.Boolean, sa.Integer and sa.JSON; ``Mapped[dict...]`` takes only dicts, ``Mapped[list...]`` only lists.
TYPE_ANNOTATION_MAP: Mapping[Any, Any] = {
    uuid.UUID: PK_TYPE,
    datetime.datetime: UTCDateTime,
    str: String,
    bool: Boolean,
    int: Integer,
    dict: JSON(shape=dict),
    list: JSON(shape=list),
    dict[str, Any]: JSON(shape=dict),
    list[Any]: JSON(shape=list),
}


def make_metadata(**kw: Any) -> sa.MetaData:
    """A new ``MetaData`` carrying dbcore's naming convention."""
    return sa.MetaData(naming_convention=dict(NAMING_CONVENTION), **kw)


def validate_seed_list(cls: type) -> None:
    """Refuse a ``seed_list`` row without an id in the ``FFFFFFFF-FFFF-FFFF-XXXX-FFFFFFFFFFFF`` form."""
    rows = getattr(cls, "seed_list", None) or []
    if not isinstance(rows, (list, tuple)):
        raise ValidationError(f"{cls.__name__}.seed_list must be a list of dicts, got {type(rows).__name__}")
    for position, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValidationError(f"{cls.__name__}.seed_list[{position}] must be a dict, got {type(row).__name__}")
        if "id" not in row:
            raise ValidationError(
                f"{cls.__name__}.seed_list[{position}] has no 'id'; seed ids look like FFFFFFFF-FFFF-FFFF-XXXX-FFFFFFFFFFFF"
            )
        seed_id = row["id"]
        if not (isinstance(seed_id, (str, uuid.UUID)) and SEED_ID_PATTERN.fullmatch(str(seed_id))):
            raise ValidationError(
                f"{cls.__name__}.seed_list[{position}] has id {seed_id!r}; seed ids must look like "
                "FFFFFFFF-FFFF-FFFF-XXXX-FFFFFFFFFFFF with XXXX in 0000-00FF or 8100-FFFF (MariaDB's UUID type "
                "refuses the ids between)"
            )


class BaseModel:
    """Behaviour shared by every dbcore declarative base (mix in before ``DeclarativeBase``).

    ``__system__``: rows may only be written by a system-key session.
    ``seed_list``: rows applied idempotently by :func:`dbcore.seeding.seed`.
    """

    __system__: ClassVar[bool] = False
    seed_list: ClassVar[list[dict[str, Any]]] = []

    def __init_subclass__(cls, **kw: Any) -> None:
        # Validate before mapping so a bad seed id never leaves a half-registered class behind.
        if "seed_list" in cls.__dict__:
            validate_seed_list(cls)
        super().__init_subclass__(**kw)

    def __repr__(self) -> str:
        # Read the loaded value only: a repr must never emit SQL or fail on a detached object.
        ident = self.__dict__.get("id")
        return f"<{type(self).__name__} id={ident!s}>"


class Base(BaseModel, DeclarativeBase):
    """The declarative base of dbcore's own tables."""

    metadata = make_metadata()
    type_annotation_map = dict(TYPE_ANNOTATION_MAP)


def make_base(name: str = "Base", *, metadata: sa.MetaData | None = None) -> type[Any]:
    """A new declarative base with dbcore's conventions and its own metadata and registry."""
    namespace = {
        "metadata": metadata if metadata is not None else make_metadata(),
        "type_annotation_map": dict(TYPE_ANNOTATION_MAP),
        "__doc__": f"Declarative base {name} with dbcore conventions.",
    }
    return type(name, (BaseModel, DeclarativeBase), namespace)
