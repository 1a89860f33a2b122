"""What each ``dbcore`` command does; :mod:`dbcore.cli` parses the command line and calls these."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.orm import registry as Registry
from sqlalchemy.pool import Pool

import dbcore.models  # noqa: F401  (every table on Base.metadata, for the schema diagram)
from dbcore import diagram, migrate, vectorsync
from dbcore.adapter.lifecycle import record_vector_space
from dbcore.base import Base
from dbcore.checks import check_models
from dbcore.config import Settings
from dbcore.DB_Auth import ApiKey
from dbcore.DB_Memories import EMBEDDING_DIMS
from dbcore.engine import get_engine
from dbcore.errors import AuthenticationFailed, DatabaseNotFound, SchemaMissing, ValidationError
from dbcore.health import ConnectionInfo, connection_error, connection_info
from dbcore.memories import add_memories
from dbcore.migrate import MigrationError
from dbcore.security import create_system_key, hash_api_key
from dbcore.seeding import SeedReport, seed
from dbcore.session import get_session, system_session
from dbcore.types import has_pgvector
from dbcore.vectorstores import get_vector_store

__all__ = [
    "COMMANDS",
    "Unreachable",
    "ModelsNotImportable",
    "SchemaMissing",
    "MigrationError",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_CONFIG",
    "EXIT_UNREACHABLE",
]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3


class Unreachable(Exception):
    pass


class ModelsNotImportable(Exception):
    """A ``--models`` module that cannot be imported, or holds no models: a usage error (exit 2)."""


def _say(text: str = "") -> None:
    print(text, flush=True)


def _reachable(settings: Settings) -> None:

    error = connection_error(settings)
    if error is None:
        return
    if error.startswith((DatabaseNotFound.__name__, AuthenticationFailed.__name__)):
        # The server answered and said why: that reason is the whole message.
        raise Unreachable(f"the server refused the connection to {settings.masked_url}: {error}")
    raise Unreachable(
        f"cannot reach the database at {settings.masked_url}: {error}; check that the server runs and DATABASE_URL is right"
    )


def _require_schema(settings: Settings, ini: migrate.IniPath = None) -> None:

    missing = migrate.missing_tables(settings, ini)
    if set(Base.metadata.tables) <= set(missing):
        raise SchemaMissing(
            f"the database at {settings.masked_url} has no dbcore schema (it was never migrated); "
            f"run `dbcore init{_ini_flag(ini)}` (or `dbcore migrate{_ini_flag(ini)}`) first"
        )
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        whose = "dbcore's tables" if ini is None else "the tables"
        raise SchemaMissing(
            f"the database at {settings.masked_url} lacks {whose} {shown}; run `dbcore migrate{_ini_flag(ini)}`"
        )


def _ini_flag(ini: migrate.IniPath) -> str:
    return "" if ini is None else f" --alembic-ini {ini}"


def _listed(revisions: tuple[str, ...]) -> str:
    """``0002`` or ``0002 and app0001``."""
    ordered = sorted(revisions)
    return ordered[0] if len(ordered) == 1 else f"{', '.join(ordered[:-1])} and {ordered[-1]}"


def _schema_at(state: migrate.SchemaState, ini: migrate.IniPath) -> str:
    """``revision 0002``, ``revisions 0002 and app0001``, ``revision app0001, with dbcore at 0002``, or ``base (empty)``.

    dbcore's revision is said when no head names it: alembic records only heads, and
    a project revision that depends on dbcore's stands for it.
    """
    if not state.heads:
        return "base (empty)"
    said = f"revision{'s' if len(state.heads) > 1 else ''} {_listed(state.heads)}"
    if state.dbcore_at is not None and state.dbcore_at not in state.heads:
        said += f", with dbcore at {state.dbcore_at}"
    return said


def _seed_all(settings: Settings, ini: migrate.IniPath) -> SeedReport:
    """Seed dbcore's models, then the project's (``dbcore_models`` of its alembic.ini) or the plugins', in one transaction."""
    registries = migrate.model_registries(settings, ini)
    total = SeedReport()
    with system_session(settings) as session:
        for registry in registries:
            total.tables.update(seed(session, registry=registry).tables)
    return total


def _ensure_vector_space(settings: Settings) -> str:
    with system_session(settings) as session:
        return record_vector_space(session, settings)


def _ensure_system_key(settings: Settings) -> str:

    given = settings.system_api_key
    with system_session(settings) as session:
        keys = session.execute(sa.select(ApiKey.key_hash).where(ApiKey.is_system.is_(True))).scalars().all()
        if given:
            if hash_api_key(given) in keys:
                return "system API key: the one in DBCORE_SYSTEM_API_KEY is stored"
            create_system_key(session, name="system (from DBCORE_SYSTEM_API_KEY)", key=given)
            return "system API key: stored the hash of DBCORE_SYSTEM_API_KEY"
        if keys:
            return f"system API key: {len(keys)} stored (only hashes are kept)"
        plain = create_system_key(session)
    return (
        "system API key (shown once, only its hash is stored; keep it secret):\n"
        f"    {plain}\n"
        "  pass it as get_session(api_key=...) to write system tables"
    )


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:

    ini = args.alembic_ini
    _reachable(settings)
    before = _schema_at(migrate.schema_state(settings, ini), ini)
    migrate.upgrade(settings, ini=ini)
    after = _schema_at(migrate.schema_state(settings, ini), ini)
    report = _seed_all(settings, ini)
    _say(f"dbcore init: {settings.dialect} at {settings.masked_url}")
    change = (
        "already current" if before == after else f"migrated from {before.replace('base (empty)', 'an empty database')}"
    )
    _say(f"  schema: {after} ({change})")
    _say(f"  tables: {sum(len(metadata.tables) for metadata in migrate.project_metadata(ini))}")
    _say(f"  seed rows: {report.inserted} inserted, {report.updated} updated, {report.unchanged} unchanged")
    _say(f"  {_ensure_vector_space(settings)}")
    _say(f"  {_ensure_system_key(settings)}")
    return EXIT_OK


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:

    ini = args.alembic_ini
    if args.sql:
        migrate.upgrade(settings, args.revision, sql=True, ini=ini)
        return EXIT_OK
    _reachable(settings)
    if args.down or (args.revision or "").startswith("-"):
        migrate.downgrade(settings, args.revision, ini=ini)
    else:
        migrate.upgrade(settings, args.revision, ini=ini)
    _say(f"dbcore migrate: {settings.masked_url} is at {_schema_at(migrate.schema_state(settings, ini), ini)}")
    return EXIT_OK


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:

    _reachable(settings)
    _require_schema(settings, args.alembic_ini)
    report = _seed_all(settings, args.alembic_ini)
    _say(f"dbcore seed: {report.inserted} inserted, {report.updated} updated, {report.unchanged} unchanged")
    for table, counts in report.tables.items():
        _say(f"  {table}: {counts.inserted} inserted, {counts.updated} updated, {counts.unchanged} unchanged")
    return EXIT_OK


def _pool_summary(info: ConnectionInfo, pool: Pool) -> str:
    """The pool in words: SQLAlchemy's raw overflow counter starts at minus the pool size, which reads as nonsense."""
    if info.pool_size is None or info.checked_out is None:
        return _POOL_WORDS.get(info.pool_class, f"{info.pool_class} (keeps no connection counts)")
    in_use = f"{info.checked_out} of {info.pool_size} connections in use"
    extra = max(0, info.overflow or 0)
    if extra:
        in_use += f" ({extra} beyond the pool size)"
    limit = getattr(pool, "_max_overflow", None)  # QueuePool keeps its limit only privately
    if limit is None:
        return in_use
    if limit < 0:
        return f"{in_use}, no overflow limit"
    return f"{in_use}, up to {limit} more when busy"


_POOL_WORDS = {
    "StaticPool": "one shared connection (an in-memory SQLite database)",
    "NullPool": "no pooling: a new connection for each use",
    "SingletonThreadPool": "one connection per thread",
}


_BACKEND_WORDS = {"integrated": "stored in the database itself (integrated backend)"}


def _migrations_summary(state: migrate.SchemaState, ini: migrate.IniPath) -> str:
    at = f"at {_schema_at(state, ini)}"
    if not state.pending:
        return f"{at} (head), none pending"
    return f"{at}, {len(state.pending)} pending to {_listed(migrate.head_revisions(ini))} (head)"


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    info = connection_info(settings)
    _say(f"database:        {info.dialect} ({info.driver}) at {info.url}")
    _say(f"connected:       {'yes' if info.connected else f'NO ({info.error})'}")
    if not info.connected:
        return EXIT_UNREACHABLE
    _say(f"server version:  {info.server_version}")
    _say(f"pool:            {_pool_summary(info, get_engine(settings).pool)}")
    if info.dialect == "postgresql":
        _say(
            f"pgvector:        {'available' if has_pgvector(get_engine(settings).dialect) else 'not available (embeddings stored as bytea)'}"
        )
    _say(
        f"vector dims:     {EMBEDDING_DIMS} (DBCORE_VECTOR_DIMS), {_BACKEND_WORDS.get(settings.vector_backend, f'stored in {settings.vector_backend}')}"
    )
    ini = args.alembic_ini
    state = migrate.schema_state(settings, ini)
    _say(f"migrations:      {_migrations_summary(state, ini)}")
    if state.pending:
        _say(f"unhealthy: migrations are pending; run `dbcore migrate{_ini_flag(ini)}`")
        return EXIT_FAILED
    _say("healthy")
    return EXIT_OK


def cmd_check_models(settings: Settings | None, args: argparse.Namespace) -> int:

    everything = migrate.project_metadata(args.alembic_ini)
    problems = [problem for metadata in everything for problem in check_models(metadata)]
    for problem in problems:
        _say(f"  {problem}")
    _say(f"dbcore check-models: {sum(len(m.tables) for m in everything)} tables, {len(problems)} problems")
    return EXIT_FAILED if problems else EXIT_OK


def _models_metadata(name: str) -> list[sa.MetaData]:
    """Every ``MetaData`` module ``name`` reaches: its own, its declarative classes' and registries' (repeats included)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        # The console script's path starts at its own directory: find `myapp.models` where the command runs.
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # the project's code: any error on import is "cannot import it"
        raise ModelsNotImportable(f"--models {name}: cannot import it: {type(exc).__name__}: {exc}") from exc
    values = [getattr(v, "metadata", None) if isinstance(v, (type, Registry)) else v for v in vars(module).values()]
    found = [value for value in values if isinstance(value, sa.MetaData)]
    if not found:
        raise ModelsNotImportable(
            f"--models {name}: it defines no declarative class, registry or MetaData; name the module of the models"
        )
    return found


def cmd_schema(settings: Settings | None, args: argparse.Namespace) -> int:
    """Print the Mermaid erDiagram of dbcore's tables and each ``--models`` module's (no database)."""
    everything = [Base.metadata, *(meta for name in args.models or () for meta in _models_metadata(name))]
    print(diagram.mermaid(*everything), end="", flush=True)  # a table met twice is drawn once
    return EXIT_OK


class ProgressBar:
    """A one-line progress bar on stderr: ``[#######.............]  35%  3500/10000``."""

    def __init__(self, label: str, width: int = 30, stream: TextIO | None = None) -> None:
        self.label = label
        self.width = width
        self.stream = stream or sys.stderr

    def __call__(self, done: int, total: int) -> None:
        fraction = 1.0 if total == 0 else min(1.0, done / total)
        filled = int(round(self.width * fraction))
        bar = "#" * filled + "." * (self.width - filled)
        end = "\n" if done >= total else ""
        print(f"\r{self.label} [{bar}] {fraction:4.0%}  {done}/{total}", end=end, file=self.stream, flush=True)


def _read_memories(path: Path) -> list[dict[str, Any]]:
    """The memories of a JSON Lines file, one object per line (blank lines skipped)."""
    memories: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"{path} line {number} is not JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(item, dict):
                raise ValidationError(f"{path} line {number} must be a JSON object, got {type(item).__name__}")
            if isinstance(item.get("created_at"), str):  # JSON has no time type: ISO 8601 text stands for one
                try:
                    item["created_at"] = dt.datetime.fromisoformat(item["created_at"])
                except ValueError:
                    raise ValidationError(
                        f"{path} line {number}: created_at {item['created_at']!r} is not an ISO 8601 time"
                    ) from None
            memories.append(item)
    return memories


def _import_memories(settings: Settings, args: argparse.Namespace) -> int:
    """``dbcore vectors import FILE``: every memory of the file in one transaction, or none."""
    path = Path(args.file)
    if not path.is_file():
        print(f"dbcore vectors import: {path} is not a file", file=sys.stderr)
        return EXIT_CONFIG
    _reachable(settings)
    _require_schema(settings)
    try:
        memories = _read_memories(path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"dbcore vectors import: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    notes = logging.getLogger("dbcore.bulk")  # the index rebuild, told on stderr
    shown, level = logging.StreamHandler(sys.stderr), notes.level
    shown.setFormatter(logging.Formatter("dbcore vectors import: %(message)s"))
    notes.addHandler(shown)
    notes.setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        with get_session(settings) as session:
            ids = add_memories(session, memories, model=args.model, bulk=True, progress=ProgressBar("import"))
    finally:
        notes.removeHandler(shown)
        notes.setLevel(level)
    _say(f"dbcore vectors import: {len(ids)} memories imported from {path} in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


def cmd_vectors(settings: Settings, args: argparse.Namespace) -> int:

    if args.action == "import":
        return _import_memories(settings, args)
    _reachable(settings)
    if settings.vector_backend == "integrated":
        _say(
            f"dbcore vectors {args.action}: the integrated store keeps vectors in the database itself; "
            "there is nothing to sync, verify or rebuild"
        )
        return EXIT_OK
    _require_schema(settings)
    store = get_vector_store(settings)
    try:
        if args.action == "sync":
            done = vectorsync.sync(store, settings=settings, batch_size=args.batch_size)
            _say(
                f"dbcore vectors sync: {done.upserted} upserted, {done.deleted} deleted, "
                f"{done.markers_cleared} markers cleared, {done.pending} pending"
            )
            if not done.ok:
                _say(f"failed: {done.error}")
                return EXIT_FAILED
            return EXIT_OK
        if args.action == "verify":
            report = vectorsync.verify(store, settings=settings)
            _say(
                f"dbcore vectors verify: {report.sql_count} in SQL, {report.store_count} in {settings.vector_backend}; "
                f"missing {len(report.missing)}, orphans {len(report.orphans)}, pending {len(report.pending)}"
            )
            for memory_id in report.drift[:20]:
                where = "missing from the store" if memory_id in set(report.missing) else "orphan in the store"
                _say(f"  drift: {memory_id} {where}")
            if not report.ok:
                _say(f"drift: {len(report.drift)} id(s); run `dbcore vectors reindex`")
                return EXIT_FAILED
            _say("in sync" if not report.pending else "in sync apart from pending markers; run `dbcore vectors sync`")
            return EXIT_OK
        rebuilt = vectorsync.reindex(
            store, settings=settings, batch_size=args.batch_size, progress=ProgressBar("reindex")
        )
        _say(
            f"dbcore vectors reindex: {rebuilt.upserted} upserted, {rebuilt.orphans_deleted} orphans deleted, "
            f"{rebuilt.markers_cleared} markers cleared"
        )
        return EXIT_OK
    finally:
        store.close()


COMMANDS: dict[str, Callable[..., int]] = {
    "init": cmd_init,
    "migrate": cmd_migrate,
    "seed": cmd_seed,
    "doctor": cmd_doctor,
    "check-models": cmd_check_models,
    "vectors": cmd_vectors,
    "schema": cmd_schema,
}
