#!/usr/bin/env python
"""Per-test cost of the pytest plugin's ``dbcore_session`` against a bare SQLAlchemy fixture.

Run from the repository root::

    python benchmarks/pytest_session.py            # 5 rounds x 400 tests per fixture and database
    python benchmarks/pytest_session.py --quick    # 1 round x 100

One *test* is what a fixture does around a test plus a small test body:

(a) dbcore: the plugin's fixtures as they run per test: ``dbcore_engine.connect()``,
    ``begin()``, ``dbcore.session_on(connection, settings)`` (a savepoint session with
    dbcore's listeners), the body, then ``session.close()``, ``rollback()``, ``close()``.
(b) bare: a plain ``sqlalchemy.create_engine`` on the same database and the same
    rollback pattern (``Session(bind=connection, join_transaction_mode="create_savepoint")``).

The body is the same for both: insert an agent, ``commit()`` (a savepoint release),
count the agents. Both run on one database per dialect, migrated by dbcore (a
temporary SQLite file; the embedded PostgreSQL 18 from ``dbcore.testing``), in
alternating order each round. Target: (a) costs <= 1.5 x (b) per test. The table goes
to stdout, the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import dbcore
from dbcore.adapter.lifecycle import init
from dbcore.testing import EmbeddedPostgres


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tests", type=int, default=None, help="tests per fixture and round (default 400)")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 5)")
    p.add_argument("--only", choices=("sqlite", "postgresql"), default=None)
    p.add_argument("--quick", action="store_true", help="1 round of 100 tests")
    args = p.parse_args()
    args.tests = args.tests or (100 if args.quick else 400)
    args.rounds = args.rounds or (1 if args.quick else 5)
    return args


def body(session: Session) -> None:
    session.add(dbcore.Agent(name="bench"))
    session.commit()
    session.scalar(sa.select(sa.func.count()).select_from(dbcore.Agent))


def runner(engine: sa.Engine, session_on: Callable[[sa.Connection], Session]) -> Callable[[], None]:
    """One test as a fixture runs it: connect, begin, a session on the connection, the body, roll back."""

    def one() -> None:
        connection = engine.connect()
        transaction = connection.begin()
        session = session_on(connection)
        body(session)
        session.close()
        transaction.rollback()
        connection.close()

    return one


def runners(settings: dbcore.Settings) -> dict[str, tuple[Callable[[], None], sa.Engine]]:
    """(a) the plugin's dbcore_session on a dbcore engine; (b) a bare engine with SQLAlchemy's own savepoint session."""
    ours, bare = dbcore.create_engine(settings), sa.create_engine(settings.url)
    return {
        "dbcore": (runner(ours, lambda connection: dbcore.session_on(connection, settings)), ours),
        "bare": (
            runner(bare, lambda connection: Session(bind=connection, join_transaction_mode="create_savepoint")),
            bare,
        ),
    }


def per_test_ms(run: Callable[[], None], tests: int) -> float:
    for _ in range(10):  # warm the pool and the statement caches
        run()
    start = time.perf_counter()
    for _ in range(tests):
        run()
    return (time.perf_counter() - start) / tests * 1000


def measure(name: str, settings: dbcore.Settings, args: argparse.Namespace) -> dict[str, Any]:
    init(settings)
    made = runners(settings)
    figures: dict[str, list[float]] = {key: [] for key in made}
    for round_no in range(args.rounds):
        order = list(made) if round_no % 2 == 0 else list(reversed(made))
        for key in order:
            figures[key].append(per_test_ms(made[key][0], args.tests))
    for _, engine in made.values():
        engine.dispose()
    dbcore_ms, bare_ms = statistics.median(figures["dbcore"]), statistics.median(figures["bare"])
    return {
        "database": name,
        "dbcore_ms": round(dbcore_ms, 3),
        "bare_ms": round(bare_ms, 3),
        "ratio": round(dbcore_ms / bare_ms, 2),
        "target": 1.5,
    }


def main() -> None:
    args = parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        if args.only in (None, "sqlite"):
            sqlite = dbcore.Settings(database_url=f"sqlite:///{Path(folder) / 'bench.sqlite3'}")
            results.append(measure("sqlite", sqlite, args))
        if args.only in (None, "postgresql"):
            server = EmbeddedPostgres()
            try:
                url = server.url.render_as_string(hide_password=False)
                results.append(measure("postgresql", dbcore.Settings(database_url=url), args))
            finally:
                dbcore.dispose_engines()
                server.cleanup()
    print(f"{'database':<12}{'dbcore ms/test':>16}{'bare ms/test':>14}{'ratio':>8}{'target':>8}")
    for r in results:
        print(f"{r['database']:<12}{r['dbcore_ms']:>16.3f}{r['bare_ms']:>14.3f}{r['ratio']:>8.2f}{'<= 1.5':>8}")
    print(json.dumps({"tests": args.tests, "rounds": args.rounds, "results": results}))


if __name__ == "__main__":
    main()
