"""Column mixins shared by every model: id, timestamps, soft delete, expiry, parent.

Column order is fixed with ``sort_order``: ``id`` first, the audit columns
(``created_at``, ``updated_at``, ``deleted_at``, ``expires_at``) last.

Soft-deleted rows are left out of every ORM SELECT on a dbcore engine
(including relationship loads; the filter is a session hook in
:mod:`dbcore.hooks`, as is the ``updated_at`` refresh on flush) unless the statement or session asks for them with
``execution_options(include_deleted=True)``. Many-to-one attributes answered
from the identity map without SQL can still return an object soft-deleted in
the same session.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from dbcore.types import PK_TYPE, UTCDateTime, new_uuid, utcnow

__all__ = [
    "BaseMixin",
    "UpdateMixin",
    "SoftDeleteMixin",
    "ExpirableMixin",
    "ParentMixin",
    "INCLUDE_DELETED",
]

#: Execution option that lets soft-deleted rows through ORM SELECTs.
INCLUDE_DELETED = "include_deleted"

_ORDER_ID = -1000
_ORDER_PARENT = -900
_ORDER_CREATED = 1000
_ORDER_UPDATED = 1001
_ORDER_DELETED = 1002
_ORDER_EXPIRES = 1003


class BaseMixin:
    """A UUID primary key ``id`` and the ``created_at`` timestamp."""

    id: Mapped[uuid.UUID] = mapped_column(PK_TYPE, primary_key=True, default=new_uuid, sort_order=_ORDER_ID)
    created_at: Mapped[datetime.datetime] = mapped_column(
        UTCDateTime,
        nullable=False,
        default=utcnow,
        sort_order=_ORDER_CREATED,
        comment="When the row was created (UTC).",
    )


class UpdateMixin:
    """``updated_at``: set on insert and refreshed on every update of the row."""

    updated_at: Mapped[datetime.datetime] = mapped_column(
        UTCDateTime,
        nullable=False,
        default=utcnow,
        onupdate=utcnow,  # covers Core UPDATE statements; a hook in dbcore.hooks covers flushes
        sort_order=_ORDER_UPDATED,
        comment="When the row was last changed (UTC).",
    )


class SoftDeleteMixin:
    """``deleted_at``: rows are marked deleted instead of removed, and hidden from SELECTs."""

    deleted_at: Mapped[datetime.datetime | None] = mapped_column(
        UTCDateTime,
        nullable=True,
        default=None,
        sort_order=_ORDER_DELETED,
        comment="When the row was soft-deleted (UTC); NULL while it is live.",
    )

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def soft_delete(self, when: datetime.datetime | None = None) -> None:
        """Mark the row deleted; it stays in the table and is hidden from ORM queries."""
        self.deleted_at = when or utcnow()

    def restore(self) -> None:
        """Undo :meth:`soft_delete`."""
        self.deleted_at = None


class ExpirableMixin:
    """``expires_at``: an optional moment after which the row no longer counts."""

    expires_at: Mapped[datetime.datetime | None] = mapped_column(
        UTCDateTime,
        nullable=True,
        default=None,
        sort_order=_ORDER_EXPIRES,
        comment="When the row stops being valid (UTC); NULL never expires.",
    )

    @hybrid_property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    @is_expired.inplace.expression
    @classmethod
    def _is_expired_expression(cls) -> sa.ColumnElement[bool]:
        return sa.and_(cls.expires_at.is_not(None), cls.expires_at <= utcnow())


class ParentMixin:
    """``parent_id``: a self-reference, with ``parent`` and ``children`` relationships."""

    @declared_attr
    def parent_id(cls) -> Mapped[uuid.UUID | None]:
        return mapped_column(
            PK_TYPE,
            sa.ForeignKey(f"{cls.__tablename__}.id"),  # type: ignore[attr-defined]
            index=True,
            nullable=True,
            sort_order=_ORDER_PARENT,
        )

    @declared_attr
    def parent(cls) -> Mapped[Any]:
        klass: Any = cls  # declared_attr passes the mapped class
        return relationship(
            klass,
            remote_side=lambda: [klass.id],
            foreign_keys=lambda: [klass.parent_id],
            back_populates="children",
        )

    @declared_attr
    def children(cls) -> Mapped[list[Any]]:
        klass: Any = cls
        return relationship(klass, foreign_keys=lambda: [klass.parent_id], back_populates="parent")
