"""Auth domain: users, API keys, MFA methods and permission grants between domains."""

from __future__ import annotations

import datetime
import uuid
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dbcore.base import Base
from dbcore.Mixins import BaseMixin, ExpirableMixin, SoftDeleteMixin, UpdateMixin
from dbcore.refs import ref_mixins
from dbcore.types import PK_TYPE, SqlEnum, Unicode

if TYPE_CHECKING:
    from dbcore.DB_Agents import Agent
    from dbcore.DB_Entities import Entity

__all__ = [
    "User",
    "UserRefMixin",
    "OptionalUserRefMixin",
    "ApiKey",
    "ApiKeyRefMixin",
    "OptionalApiKeyRefMixin",
    "MFAMethodType",
    "MFAMethod",
    "MFAMethodRefMixin",
    "OptionalMFAMethodRefMixin",
    "Permission",
    "PermissionGrant",
    "PermissionGrantRefMixin",
    "OptionalPermissionGrantRefMixin",
]


class User(Base, BaseMixin, UpdateMixin, SoftDeleteMixin):
    """A person (or service account) who signs in and owns agents."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(Unicode(320), unique=True, comment="Sign-in address, unique.")
    display_name: Mapped[str] = mapped_column(Unicode(200), default="", comment="Name shown to other users.")
    is_active: Mapped[bool] = mapped_column(default=True, comment="False blocks sign-in without deleting the user.")
    last_login_at: Mapped[datetime.datetime | None] = mapped_column(comment="When the user last signed in (UTC).")
    # The user's own entity. entities -> agents -> users closes a cycle, so this key is
    # added after both tables exist (use_alter) and its relationship is bound in DB_Entities.
    entity_id: Mapped[uuid.UUID | None] = mapped_column(
        PK_TYPE, sa.ForeignKey("entities.id", use_alter=True), index=True
    )

    if TYPE_CHECKING:
        # Backrefs added at run time by the reference mixins and bind_reverse() of other models.
        api_keys_as_owner: Mapped[list[ApiKey]]
        mfa_methods: Mapped[list[MFAMethod]]
        permission_grants_as_grantor: Mapped[list[PermissionGrant]]
        permission_grants_as_grantee: Mapped[list[PermissionGrant]]
        agents_as_owner: Mapped[list[Agent]]
        entity: Mapped[Entity | None]


# ref_mixins() builds its classes at run time; type checkers read these declarations instead
# (tests/test_typing.py keeps them equal to what ref_mixins() generates).
if TYPE_CHECKING:

    class UserRefMixin:
        user_id: Mapped[uuid.UUID]
        user: Mapped[User]

    class OptionalUserRefMixin:
        user_id: Mapped[uuid.UUID | None]
        user: Mapped[User | None]

    class OwnerUserRefMixin:
        owner_id: Mapped[uuid.UUID]
        owner: Mapped[User]

    class OptionalOwnerUserRefMixin:
        owner_id: Mapped[uuid.UUID | None]
        owner: Mapped[User | None]

    class GrantorUserRefMixin:
        grantor_id: Mapped[uuid.UUID]
        grantor: Mapped[User]

    class GranteeUserRefMixin:
        grantee_id: Mapped[uuid.UUID]
        grantee: Mapped[User]

else:
    UserRefMixin, OptionalUserRefMixin = ref_mixins(User)
    OwnerUserRefMixin, OptionalOwnerUserRefMixin = ref_mixins(User, role="owner")
    GrantorUserRefMixin, _ = ref_mixins(User, role="grantor")
    GranteeUserRefMixin, _ = ref_mixins(User, role="grantee")


class ApiKey(Base, BaseMixin, UpdateMixin, ExpirableMixin, OptionalOwnerUserRefMixin):
    """An API key. Only a SHA-256 hash and a short prefix are stored, never the key."""

    __tablename__ = "api_keys"
    __system__ = True

    name: Mapped[str] = mapped_column(Unicode(200), default="", comment="What the key is for, chosen by its owner.")
    prefix: Mapped[str] = mapped_column(
        Unicode(16), index=True, comment="First characters of the key, to find it and show it."
    )
    key_hash: Mapped[str] = mapped_column(Unicode(64), unique=True, comment="SHA-256 hex digest of the whole key.")
    is_system: Mapped[bool] = mapped_column(default=False, comment="True for keys that may write system tables.")
    last_used_at: Mapped[datetime.datetime | None] = mapped_column(comment="When the key last opened a session (UTC).")
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(
        comment="When the key was revoked (UTC); NULL while valid."
    )


if TYPE_CHECKING:

    class ApiKeyRefMixin:
        api_key_id: Mapped[uuid.UUID]
        api_key: Mapped[ApiKey]

    class OptionalApiKeyRefMixin:
        api_key_id: Mapped[uuid.UUID | None]
        api_key: Mapped[ApiKey | None]

else:
    ApiKeyRefMixin, OptionalApiKeyRefMixin = ref_mixins(ApiKey)


class MFAMethodType(IntEnum):
    TOTP = 1
    EMAIL = 2
    SMS = 3


class MFAMethod(Base, BaseMixin, UpdateMixin, UserRefMixin):
    """A second factor registered by a user."""

    __tablename__ = "mfa_methods"

    method_type: Mapped[MFAMethodType] = mapped_column(SqlEnum(MFAMethodType), comment="Kind of second factor.")
    label: Mapped[str] = mapped_column(
        Unicode(200), default="", comment="Masked destination shown to the user, e.g. +1 *** 42."
    )
    verified_at: Mapped[datetime.datetime | None] = mapped_column(
        comment="When the user proved control of it (UTC); NULL until then."
    )


if TYPE_CHECKING:

    class MFAMethodRefMixin:
        mfa_method_id: Mapped[uuid.UUID]
        mfa_method: Mapped[MFAMethod]

    class OptionalMFAMethodRefMixin:
        mfa_method_id: Mapped[uuid.UUID | None]
        mfa_method: Mapped[MFAMethod | None]

else:
    MFAMethodRefMixin, OptionalMFAMethodRefMixin = ref_mixins(MFAMethod)


class Permission(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3


class PermissionGrant(Base, BaseMixin, UpdateMixin, ExpirableMixin, GrantorUserRefMixin, GranteeUserRefMixin):
    """A user (grantor) delegates a right on one resource of any domain to another user (grantee).

    ``resource_type`` names the table of the resource (``agents``, ``rooms``,
    ``memories``...), ``resource_id`` its id: a grant may point into any domain,
    so it is not a foreign key.
    """

    __tablename__ = "permission_grants"
    __table_args__ = (
        sa.UniqueConstraint("grantee_id", "resource_type", "resource_id", "permission"),
        sa.Index(None, "resource_type", "resource_id"),
    )

    resource_type: Mapped[str] = mapped_column(Unicode(64), comment="Table name of the resource the grant is for.")
    resource_id: Mapped[uuid.UUID] = mapped_column(comment="Id of the resource in that table.")
    permission: Mapped[Permission] = mapped_column(SqlEnum(Permission), comment="The right delegated.")
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(comment="When the grantor withdrew it (UTC).")
    note: Mapped[dict[str, Any] | None] = mapped_column(comment="Free-form context of the grant (JSON).")


if TYPE_CHECKING:

    class PermissionGrantRefMixin:
        permission_grant_id: Mapped[uuid.UUID]
        permission_grant: Mapped[PermissionGrant]

    class OptionalPermissionGrantRefMixin:
        permission_grant_id: Mapped[uuid.UUID | None]
        permission_grant: Mapped[PermissionGrant | None]

else:
    PermissionGrantRefMixin, OptionalPermissionGrantRefMixin = ref_mixins(PermissionGrant)
