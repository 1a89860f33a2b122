"""Setting a database up for the adapter, and the checks it offers on its state."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import sqlalchemy as sa

from dbcore import migrate
from dbcore.adapter.context import AdapterOptions, Context
from dbcore.adapter.operation import bind, reads
from dbcore.config import Settings
from dbcore.DB_Memories import EMBEDDING_DIMS, VectorSpace
from dbcore.errors import DimensionMismatchError, ValidationError
from dbcore.health import ConnectionInfo
from dbcore.seeding import seed
from dbcore.session import system_session

__all__ = [
    "InitReport",
    "init",
    "record_vector_space",
    "options",
    "warn_when_busy",
    "ensure_embedding_dimension",
    "LifecycleMethods",
]

log = logging.getLogger("dbcore.adapter")

#: Checked-out connections past this share of the pool log a warning (connection_info()).
BUSY_SHARE = 0.8
#: The vector space dbcore's memory embeddings live in.
MEMORY_SPACE = "memories"


@dataclass
class InitReport:
    """What :func:`init` found and did."""

    revisions: tuple[str, ...] = ()
    seeded_rows: int = 0
    vector_space: str = ""
    notes: list[str] = field(default_factory=list)


def options(duplicate_threshold: float) -> AdapterOptions:
    """Checked adapter options: the threshold is a cosine similarity in (0, 1]."""
    if isinstance(duplicate_threshold, bool) or not isinstance(duplicate_threshold, (int, float)):
        raise ValidationError(f"duplicate_threshold={duplicate_threshold!r} must be a number in (0, 1]")
    if not (math.isfinite(duplicate_threshold) and 0 < duplicate_threshold <= 1):
        raise ValidationError(f"duplicate_threshold={duplicate_threshold!r} must be a number in (0, 1]")
    return AdapterOptions(duplicate_threshold=float(duplicate_threshold))


def init(settings: Settings, ini: migrate.IniPath = None) -> InitReport:
    """Migrate dbcore and the registered plugins, seed, record the memories' vector space; idempotent.

    ``ini``: a project's alembic.ini (its own branch beside dbcore's), as ``dbcore init --alembic-ini``.
    """
    migrate.upgrade(settings, ini=ini)
    report = InitReport(revisions=migrate.current_heads(settings, ini))
    with system_session(settings) as session:
        report.seeded_rows = sum(
            seed(session, registry=registry).inserted for registry in migrate.model_registries(settings, ini)
        )
        report.vector_space = record_vector_space(session, settings)
    return report


def record_vector_space(session: sa.orm.Session, settings: Settings) -> str:
    """Record the memories' dimension, metric and backend the first time; refuse a changed dimension.

    Returns one line saying what it found or did (``dbcore init`` prints it).
    """
    space = session.scalars(sa.select(VectorSpace).where(VectorSpace.name == MEMORY_SPACE)).one_or_none()
    if space is None:
        backend = settings.vector_backend
        session.add(VectorSpace(name=MEMORY_SPACE, backend=backend, dims=EMBEDDING_DIMS, metric="cosine"))
        return f"recorded vector space '{MEMORY_SPACE}': {EMBEDDING_DIMS} dims, cosine, {backend}"
    _same_dims(space.dims, EMBEDDING_DIMS)
    return f"vector space '{MEMORY_SPACE}': {space.dims} dims, {space.metric}, {space.backend}"


def _same_dims(recorded: int, wanted: int) -> None:
    if recorded != wanted:
        raise DimensionMismatchError(
            f"the database's vector space '{MEMORY_SPACE}' has {recorded} dims but {wanted} were asked for "
            f"(DBCORE_VECTOR_DIMS is {EMBEDDING_DIMS}); set DBCORE_VECTOR_DIMS={recorded}, "
            "or migrate and re-embed (docs/vectors.md); nothing was dropped"
        )


def warn_when_busy(info: ConnectionInfo) -> ConnectionInfo:
    """``info``, after a warning when checked-out connections pass 80% of the pool."""
    if info.pool_size and info.checked_out is not None and info.checked_out > BUSY_SHARE * info.pool_size:
        log.warning(
            "%d of %d pooled connections are checked out (over %d%%); raise DBCORE_POOL_SIZE or release sessions sooner",
            info.checked_out,
            info.pool_size,
            round(BUSY_SHARE * 100),
        )
    return info


@reads
def ensure_embedding_dimension(cx: Context, dims: int) -> None:
    """Check that the recorded vector space (and the schema) hold ``dims``-value embeddings.

    Raises :class:`~dbcore.DimensionMismatchError` saying what to run when they differ;
    never drops or rewrites anything. A database without a recorded space (``init()``
    not run) is checked against the schema's dimension only.
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
        raise ValidationError(f"dims={dims!r} must be a positive int")
    recorded = cx.session.scalars(sa.select(VectorSpace.dims).where(VectorSpace.name == MEMORY_SPACE)).one_or_none()
    _same_dims(EMBEDDING_DIMS if recorded is None else recorded, dims)


class LifecycleMethods:
    ensure_embedding_dimension = bind(ensure_embedding_dimension)
