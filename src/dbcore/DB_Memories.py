"""Memories domain: memories, their embeddings, vector spaces (system), the cache and the logs.

The embedding dimension is part of the schema: it is read once, when this
module is imported, from ``DBCORE_VECTOR_DIMS`` (default 384). Changing it is
an explicit operation (a migration and a re-embed), never a silent drop.
"""

from __future__ import annotations

import uuid
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dbcore.base import Base
from dbcore.config import vector_dims_from_env
from dbcore.DB_Agents import AgentRefMixin, OptionalAgentRefMixin
from dbcore.DB_Entities import (
    EntityRefMixin,
    OptionalEntityRefMixin,
    OptionalRoomRefMixin,
    OptionalWorldRefMixin,
    RoomRefMixin,
)
from dbcore.Mixins import BaseMixin, ExpirableMixin, ParentMixin, UpdateMixin
from dbcore.refs import ref_mixins
from dbcore.types import JSON, PK_TYPE, BigInteger, SqlEnum, Unicode, Vector

__all__ = [
    "EMBEDDING_DIMS",
    "MemoryKind",
    "Memory",
    "MemoryRefMixin",
    "OptionalMemoryRefMixin",
    "MemoryEmbedding",
    "MemoryEmbeddingRefMixin",
    "OptionalMemoryEmbeddingRefMixin",
    "VectorSpace",
    "CacheEntry",
    "EmbeddingVersion",
    "VectorOutbox",
    "OUTBOX_OPS",
    "CacheEntryRefMixin",
    "OptionalCacheEntryRefMixin",
    "Log",
]

#: Dimension of ``memory_embeddings.embedding``, from DBCORE_VECTOR_DIMS at import.
EMBEDDING_DIMS = vector_dims_from_env()


class MemoryKind(IntEnum):
    MESSAGE = 1
    DOCUMENT = 2
    FRAGMENT = 3
    DESCRIPTION = 4
    CUSTOM = 5


class Memory(
    Base, BaseMixin, UpdateMixin, ParentMixin, AgentRefMixin, EntityRefMixin, RoomRefMixin, OptionalWorldRefMixin
):
    """Something an agent remembers: a message, a document or one of its fragments."""

    __tablename__ = "memories"
    __table_args__ = (
        sa.Index(None, "room_id", "created_at"),
        sa.Index(None, "entity_id", "created_at"),
        sa.Index(None, "agent_id", "kind", "created_at"),
        sa.Index(None, "room_id", "content_hash"),
    )

    kind: Mapped[MemoryKind] = mapped_column(SqlEnum(MemoryKind), index=True, comment="What sort of memory this is.")
    content: Mapped[dict[str, Any]] = mapped_column(comment="The memory itself: text, attachments, actions (JSON).")
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", default=dict, comment="Scope, source, tags and other facts about the memory (JSON)."
    )
    is_unique: Mapped[bool] = mapped_column(default=False, comment="True when no near-duplicate was stored before it.")
    content_hash: Mapped[str | None] = mapped_column(
        Unicode(64), comment="SHA-256 of the canonical JSON of content: finds exact duplicates in a room."
    )

    if TYPE_CHECKING:
        memory_embeddings: Mapped[list[MemoryEmbedding]]  # backref of MemoryEmbedding.memory


# ref_mixins() builds its classes at run time; type checkers read these declarations instead
# (tests/test_typing.py keeps them equal to what ref_mixins() generates).
if TYPE_CHECKING:

    class MemoryRefMixin:
        memory_id: Mapped[uuid.UUID]
        memory: Mapped[Memory]

    class OptionalMemoryRefMixin:
        memory_id: Mapped[uuid.UUID | None]
        memory: Mapped[Memory | None]

else:
    MemoryRefMixin, OptionalMemoryRefMixin = ref_mixins(Memory)


class MemoryEmbedding(Base, BaseMixin, MemoryRefMixin):
    """The embedding vector of one memory (one per memory)."""

    __tablename__ = "memory_embeddings"
    __table_args__ = (sa.UniqueConstraint("memory_id"),)

    embedding: Mapped[np.ndarray] = mapped_column(Vector(EMBEDDING_DIMS), comment="The embedding (float32).")
    model: Mapped[str] = mapped_column(Unicode(200), default="", comment="Name of the model that made the embedding.")


if TYPE_CHECKING:

    class MemoryEmbeddingRefMixin:
        memory_embedding_id: Mapped[uuid.UUID]
        memory_embedding: Mapped[MemoryEmbedding]

    class OptionalMemoryEmbeddingRefMixin:
        memory_embedding_id: Mapped[uuid.UUID | None]
        memory_embedding: Mapped[MemoryEmbedding | None]

else:
    MemoryEmbeddingRefMixin, OptionalMemoryEmbeddingRefMixin = ref_mixins(MemoryEmbedding)


class VectorSpace(Base, BaseMixin, UpdateMixin):
    """The dimension and metric of a vector space, recorded when it is created. A system table."""

    __tablename__ = "vector_spaces"
    __system__ = True

    name: Mapped[str] = mapped_column(Unicode(100), unique=True, comment="Name of the space (the collection or index).")
    backend: Mapped[str] = mapped_column(Unicode(40), comment="Where its vectors live: integrated, chroma or pinecone.")
    dims: Mapped[int] = mapped_column(comment="Number of values in every vector of the space.")
    metric: Mapped[str] = mapped_column(Unicode(20), default="cosine", comment="Similarity metric of the space.")


class EmbeddingVersion(Base, BaseMixin):
    """A counter bumped in the same transaction as every write to an embedding table.

    The integrated vector store reads it before each query: an unchanged counter
    means its per-process matrix cache is still exact, a changed one reloads it.
    """

    __tablename__ = "embedding_versions"

    name: Mapped[str] = mapped_column(Unicode(100), unique=True, comment="Name of the counted table.")
    version: Mapped[int] = mapped_column(BigInteger, default=0, comment="Bumped by every write to the table.")


#: What an outbox row asks the external vector store to do for its memory.
OUTBOX_OPS = ("upsert", "delete")


class VectorOutbox(Base, BaseMixin):
    """Pending work for an external vector store: written with the memory, cleared once the store has it.

    No foreign key: a delete marker outlives the memory it names.
    """

    __tablename__ = "vector_outbox"

    memory_id: Mapped[uuid.UUID] = mapped_column(
        PK_TYPE, index=True, comment="The memory whose vector must be written or removed."
    )
    op: Mapped[str] = mapped_column(
        Unicode(10), comment="upsert or delete (sync reads the rows' current state either way)."
    )


class CacheEntry(Base, BaseMixin, UpdateMixin, ExpirableMixin, OptionalAgentRefMixin):
    """A cached value under a key, optionally per agent, until it expires."""

    __tablename__ = "cache_entries"
    __table_args__ = (sa.UniqueConstraint("agent_id", "key"),)

    key: Mapped[str] = mapped_column(Unicode(255), index=True, comment="Cache key chosen by the caller.")
    value: Mapped[Any] = mapped_column(JSON, comment="The cached value (JSON).")


if TYPE_CHECKING:

    class CacheEntryRefMixin:
        cache_entry_id: Mapped[uuid.UUID]
        cache_entry: Mapped[CacheEntry]

    class OptionalCacheEntryRefMixin:
        cache_entry_id: Mapped[uuid.UUID | None]
        cache_entry: Mapped[CacheEntry | None]

else:
    CacheEntryRefMixin, OptionalCacheEntryRefMixin = ref_mixins(CacheEntry)


class Log(Base, BaseMixin, AgentRefMixin, OptionalRoomRefMixin, OptionalEntityRefMixin):
    """An entry of an agent's runtime log: what it did, with a typed JSON body."""

    __tablename__ = "logs"
    __table_args__ = (
        sa.Index(None, "agent_id", "created_at"),
        sa.Index(None, "room_id", "type", "created_at"),
    )

    type: Mapped[str] = mapped_column(Unicode(100), comment="What the entry records (action, evaluator, model...).")
    body: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="The entry's details (JSON).")
