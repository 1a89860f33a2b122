"""What every bad-input case is checked against, and the one database per dialect the cases share.

A database case runs ``act(ctx)`` and asserts the contract of docs/errors.md: the
error is of the expected type, its message names what was wrong and holds no SQL,
parameter dump or secret, no table changed, and the engine still answers with
nothing checked out. One migrated, seeded database per dialect serves a whole
module (building one costs about a second on a server), since a refused write
leaves it as it was: that is exactly what each case proves.
"""

from __future__ import annotations

import re
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

import dbcore
from dbcore.base import Base
from dbcore.DB_Memories import EMBEDDING_DIMS, EmbeddingVersion
from dbcore.security import create_system_key
from dbcore.testing import DialectUnavailable, TestServers, add_memory_parents, isolated_database, required_dialects

#: Text that must never appear in a bad-input error: SQL and SQLAlchemy's parameter dumps.
FORBIDDEN = ("[parameters:", "INSERT INTO", "SELECT ", "UPDATE ", "DELETE FROM", "Traceback")
#: A SQL-injection-looking value, sent wherever a caller's text reaches dbcore.
INJECTION = "x'; DROP TABLE memories; --"
#: A password planted in URLs and keys; it must appear in no message or traceback.
SECRET = "s3cr3t-PW-9f2"

DB_DIALECTS = ("sqlite", "postgresql", "postgresql_novector", "mariadb")
_MARKS = {
    "sqlite": pytest.mark.sqlite,
    "postgresql": pytest.mark.postgresql,
    "postgresql_novector": pytest.mark.postgresql,
    "mariadb": pytest.mark.mariadb,
}
DIALECT_PARAMS = [pytest.param(name, marks=_MARKS[name], id=name) for name in DB_DIALECTS]


@dataclass(frozen=True)
class Case:
    """One bad input: what to do, the error it must raise and a regex its message must match."""

    id: str
    act: Callable[..., object]
    error: type[BaseException] | tuple[type[BaseException], ...]
    names: str

    def __str__(self) -> str:
        return self.id


def params(cases: list[Case]) -> list[Any]:
    ids = [case.id for case in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"repeated case ids: {duplicates}"
    return [pytest.param(case, id=case.id) for case in cases]


def column_named(table: str, column: str) -> str:
    """A regex for a message naming ``table.column``: dbcore's form, or a server's wording that says both."""
    t, c = re.escape(table), re.escape(column)
    return rf"{t}\.{c}\b|\"{c}\" of relation \"{t}\"|{t}_{c}"


def check_message(error: BaseException, names: str, *secrets: str) -> str:
    """The message names what was wrong, and neither it nor the traceback shows SQL or a secret."""
    message = str(error)
    assert re.search(names, message), f"message does not name {names!r}: {message!r}"
    for fragment in FORBIDDEN:
        assert fragment not in message, f"message holds {fragment!r}: {message!r}"
    shown = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for secret in secrets:
        assert secret not in shown, f"the secret {secret!r} appears in the error or its chain"
    return message


# --- the shared database ----------------------------------------------------------------


@dataclass
class Ctx:
    """A migrated, seeded database and the rows the cases refer to."""

    dialect: str
    settings: dbcore.Settings
    agent_id: uuid.UUID
    entity_id: uuid.UUID
    room_id: uuid.UUID
    memory_id: uuid.UUID
    user_email: str
    system_key: str
    revoked_key: str
    expired_key: str
    plain_key: str

    @property
    def parents(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "entity_id": self.entity_id, "room_id": self.room_id}

    def memory(self, **fields: Any) -> dict[str, Any]:
        """A valid add_memories item with ``fields`` changed (a None value drops the key)."""
        item: dict[str, Any] = {**self.parents, "kind": "message", "content": {"text": "hi"}}
        item.update(fields)
        return {key: value for key, value in item.items() if value is not None}


def _database(dialect: str, servers: TestServers, folder: Path) -> Iterator[URL]:
    if dialect == "sqlite":
        yield make_url(f"sqlite:///{folder / 'bad_inputs.sqlite3'}")
        return
    try:
        server = servers.url(dialect)
    except DialectUnavailable as exc:
        if dialect in required_dialects():
            pytest.fail(f"{dialect} is required by DBCORE_REQUIRE_DIALECTS but unavailable: {exc}", pytrace=False)
        pytest.skip(f"{dialect} unavailable: {exc}")
    with isolated_database(server) as url:
        yield url


def _keys(settings: dbcore.Settings) -> tuple[str, str, str, str]:
    """A valid system key, a revoked one, an expired one and a valid key that is not a system key."""
    with dbcore.system_session(settings) as session:
        system = create_system_key(session, name="valid")
        revoked = create_system_key(session, name="revoked")
        expired = create_system_key(session, name="expired")
        plain = create_system_key(session, name="plain")
        rows = {row.name: row for row in session.scalars(sa.select(dbcore.ApiKey))}
        rows["revoked"].revoked_at = dbcore.utcnow()
        rows["expired"].expires_at = dbcore.utcnow().replace(year=2000)
        rows["plain"].is_system = False
    return system, revoked, expired, plain


def build_ctx(dialect: str, servers: TestServers, folder: Path) -> Iterator[Ctx]:
    from dbcore import migrate
    from dbcore.memories import add_memories

    for url in _database(dialect, servers, folder):
        settings = dbcore.Settings(database_url=url.render_as_string(hide_password=False), retry_max_seconds=5)
        migrate.upgrade(settings, "head")
        with dbcore.system_session(settings) as session:
            dbcore.seed(session)
        with dbcore.get_session(settings) as session:
            parents = add_memory_parents(session, name="bad-inputs")
            session.add(dbcore.User(email="taken@example.com"))
            vector = np.linspace(0.1, 1.0, EMBEDDING_DIMS, dtype=np.float32)
            [memory_id] = add_memories(
                session,
                [
                    {
                        **{k: parents[k] for k in ("agent_id", "entity_id")},
                        "room_id": parents["room_ids"][0],
                        "kind": "message",
                        "content": {"text": "seed"},
                    }
                ],
                vector.reshape(1, -1),
            )
        system, revoked, expired, plain = _keys(settings)
        yield Ctx(
            dialect=dialect,
            settings=settings,
            agent_id=parents["agent_id"],
            entity_id=parents["entity_id"],
            room_id=parents["room_ids"][0],
            memory_id=memory_id,
            user_email="taken@example.com",
            system_key=system,
            revoked_key=revoked,
            expired_key=expired,
            plain_key=plain,
        )
        dbcore.dispose_engines()


def snapshot(settings: dbcore.Settings) -> dict[str, int]:
    """Rows per table of Base.metadata, and the embedding version counter, in one round trip."""
    counts = [
        sa.select(sa.literal(table.name).label("name"), sa.func.count().label("n")).select_from(table)
        for table in Base.metadata.sorted_tables
    ]
    version = sa.select(
        sa.literal("embedding_versions.version").label("name"),
        sa.func.coalesce(sa.func.sum(EmbeddingVersion.__table__.c.version), 0).label("n"),
    )
    with dbcore.get_engine(settings).connect() as connection:
        return {name: int(n) for name, n in connection.execute(sa.union_all(*counts, version))}


def check_still_usable(settings: dbcore.Settings) -> None:
    """A new session answers and the engine's pool has nothing checked out."""
    with dbcore.get_session(settings) as session:
        assert session.execute(sa.text("SELECT 1")).scalar_one() == 1
    pool = dbcore.get_engine(settings).pool
    if hasattr(pool, "checkedout"):
        assert pool.checkedout() == 0, f"{pool.checkedout()} connection(s) left checked out"


def run_database_case(case: Case, ctx: Ctx) -> None:
    """The four promises of the contract for one case on one database."""
    before = snapshot(ctx.settings)
    with pytest.raises(case.error) as caught:
        case.act(ctx)
    check_message(caught.value, case.names, SECRET, ctx.system_key, ctx.revoked_key, ctx.expired_key)
    assert snapshot(ctx.settings) == before, "a refused input changed the database"
    check_still_usable(ctx.settings)
