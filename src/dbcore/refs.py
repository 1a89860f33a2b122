"""Reference mixins: the required and optional foreign key to a table, with its relationship.

``PersonRefMixin, OptionalPersonRefMixin = ref_mixins(Person)`` gives any model
that inherits one of them:

- ``person_id``: ``PK_TYPE``, ``ForeignKey("people.id")``, indexed, NOT NULL
  (nullable in the optional mixin), no comment (keys carry none); when
  ``Person`` is on another base (``dbcore.Agent`` from a project's own
  ``make_base()``), the key names the column object, which resolves across
  ``MetaData``;
- ``person``: a many-to-one relationship to ``Person``, with the backref
  ``Person.<plural of the referencing table>`` (``Person.notes``).

The backref is a ``relationship(back_populates=...)`` added to ``Person`` as soon
as the referencing class is mapped, not SQLAlchemy's ``backref()``, which makes
the attribute only when the mappers are configured: ``selectinload(Person.notes)``
in a module body, before any query ran, would raise AttributeError.

With a role (``ref_mixins(Person, role="author")``) the column is
``author_id``, the relationship ``author`` and the backref
``Person.<plural table>_as_<role>`` (``Person.reviews_as_author``), so several
references from one table to the same table never clash.

:func:`bind_reverse` is the seed's late binding
(``Entity.users = relationship("User", backref="entity")``) with name checks.
"""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, declared_attr, mapped_column, relationship

from dbcore.errors import ConfigurationError
from dbcore.naming import pluralize, singularize
from dbcore.types import PK_TYPE

__all__ = ["ref_mixins", "ref_names", "bind_reverse"]


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _tablename(model: type) -> str:
    name = getattr(model, "__tablename__", None)
    if not isinstance(name, str):
        raise ConfigurationError(f"{model!r} has no __tablename__; ref_mixins() needs a mapped table class")
    return name


def ref_names(model: type, referencing_table: str, role: str | None = None) -> tuple[str, str, str]:
    """``(column, relationship, backref)`` names a reference from ``referencing_table`` to ``model`` gets."""
    attribute = role or singularize(_tablename(model))
    backref_name = pluralize(referencing_table)
    if role:
        backref_name = f"{backref_name}_as_{role}"
    return f"{attribute}_id", attribute, backref_name


def _existing(model: type, name: str) -> bool:
    return any(name in klass.__dict__ for klass in model.__mro__)


class _Reverse(NamedTuple):
    """The one-to-many side of a reference, added to ``target`` once the referencing class is mapped."""

    target: type
    name: str  # Person.notes
    column: str  # Note.person_id
    attribute: str  # Note.person


#: Referencing classes being mapped -> the reverse sides their mixins declared.
_pending_reverses: dict[type, list[_Reverse]] = {}


@sa.event.listens_for(Mapper, "after_mapper_constructed")
def _add_pending_reverses(mapper: Mapper[Any], class_: type) -> None:
    """Give ``Person`` its ``notes`` the moment ``Note`` is mapped, before any configuration.

    Only classes that inherit a mixin of :func:`ref_mixins` are in the table; every
    other mapper passes through untouched. The one listener outside
    :mod:`dbcore.hooks`: it shapes the mapping itself, which must hold whether or
    not hooks (a higher layer) is ever imported. The referencing class must be mapped
    first: a target whose mappers are already configured initialises the new
    relationship at once, and that resolves ``Note``.
    """
    for reverse in _pending_reverses.pop(class_, ()):
        sa.inspect(reverse.target).add_property(reverse.name, _reverse_relationship(class_, reverse))


def _reverse_relationship(referencing: type, reverse: _Reverse) -> Any:
    # A function of its own so each lambda keeps its own ``reverse``, not the loop's last.
    return relationship(
        referencing,
        foreign_keys=lambda: [getattr(referencing, reverse.column)],
        back_populates=reverse.attribute,
    )


def _foreign_key(model: type, referencing: type, table: str) -> sa.ForeignKey:
    """``ForeignKey("people.id")`` on one base; across bases (another ``MetaData``) the column itself.

    A string is looked up in the referencing table's own metadata, where a table of
    another base does not exist; the column object resolves across metadata.
    """
    target = getattr(model, "__table__", None)
    if isinstance(target, sa.Table) and target.metadata is not getattr(referencing, "metadata", None):
        return sa.ForeignKey(target.c.id)
    return sa.ForeignKey(f"{table}.id")


def _build(model: type, role: str | None, nullable: bool) -> type:
    table = _tablename(model)
    attribute = role or singularize(table)
    column = f"{attribute}_id"

    # No return annotations: declarative would evaluate them in the model's module.
    def fk_column(cls):  # type: ignore[no-untyped-def]
        return mapped_column(PK_TYPE, _foreign_key(model, cls, table), index=True, nullable=nullable)

    def reference(cls):  # type: ignore[no-untyped-def]
        _, _, backref_name = ref_names(model, _tablename(cls), role)
        if _existing(model, backref_name):
            raise ConfigurationError(
                f"{cls.__name__}.{attribute} would add the backref {model.__name__}.{backref_name}, "
                f"but {model.__name__} already has an attribute of that name; "
                "rename it or reference with a role (ref_mixins(..., role=...))"
            )
        _pending_reverses.setdefault(cls, []).append(_Reverse(model, backref_name, column, attribute))
        return relationship(model, foreign_keys=lambda: [getattr(cls, column)], back_populates=backref_name)

    prefix = "" if not nullable else "Optional"
    name = f"{prefix}{_camel(role) if role else ''}{model.__name__}RefMixin"
    namespace = {
        column: declared_attr(fk_column),
        attribute: declared_attr(reference),
        "__doc__": (
            f"{'Optional' if nullable else 'Required'} reference to {model.__name__} "
            f"({column} -> {table}.id, relationship '{attribute}')."
        ),
        "__module__": model.__module__,
    }
    mixin = type(name, (), namespace)
    mixin.__qualname__ = name
    return mixin


@cache
def ref_mixins(model: type, role: str | None = None) -> tuple[type[Any], type[Any]]:
    """``(<Model>RefMixin, Optional<Model>RefMixin)`` for references to ``model``.

    With ``role="owner"`` the classes are ``OwnerUserRefMixin`` and
    ``OptionalOwnerUserRefMixin`` and the column is ``owner_id``.
    Calling twice with the same arguments returns the same classes.
    """
    if role is not None and not role.isidentifier():
        raise ConfigurationError(f"ref_mixins role must be a Python identifier, got {role!r}")
    return _build(model, role, nullable=False), _build(model, role, nullable=True)


def bind_reverse(
    model: type,
    target: type | str,
    *,
    name: str | None = None,
    backref: str | None = None,
    **kw: Any,
) -> None:
    """Late-bind ``model.<name> = relationship(target, backref=<backref>)``.

    The default ``name`` is the plural of the target's table and the default
    ``backref`` the singular of ``model``'s table, as docs/patterns.md describes:
    ``bind_reverse(Entity, User)`` sets ``Entity.users`` and ``User.entity``.
    ``target`` may be a class name, resolved when mappers are configured, so
    the call works whatever order the modules are imported in (``name`` is
    then required). Extra keywords go to ``relationship()``.
    """
    if name is None:
        if isinstance(target, str):
            raise ConfigurationError(f"bind_reverse({model.__name__}, {target!r}) needs name= when target is a string")
        name = pluralize(_tablename(target))
    backref = backref or singularize(_tablename(model))
    if _existing(model, name):
        raise ConfigurationError(f"bind_reverse: {model.__name__} already has an attribute named {name!r}")
    if not isinstance(target, str) and _existing(target, backref):
        raise ConfigurationError(
            f"bind_reverse: {target.__name__} already has an attribute named {backref!r}; pass backref= to rename it"
        )
    setattr(model, name, relationship(target, backref=backref, **kw))
