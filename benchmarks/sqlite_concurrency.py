#!/usr/bin/env python
"""SQLite concurrency benchmark: units of work per second from 4 processes on one file.

Run from the repository root::

    python benchmarks/sqlite_concurrency.py              # 4 processes x 300 units, 3 rounds
    python benchmarks/sqlite_concurrency.py --units 100 --rounds 1

Sessions that may write begin with ``BEGIN IMMEDIATE`` (``get_session()``), read-only
ones with a deferred ``BEGIN`` (``get_session(read_only=True)``); the old behaviour,
a deferred ``BEGIN`` for every session, is run side by side as the baseline (a plain
``Session`` on the engine with ``dbcore_read_only=True``, which is exactly that).

Workloads, each on a fresh file of 1,000 rows, every process starting at the same
instant: *read then write* (read ``max(id)``, insert a row), *write only* (insert a
row), *read only* (``max(id)`` and one row by id) and *mixed* (2 read-only processes
beside 2 read-then-write ones). A unit that raises ``ConcurrencyError`` is counted as
failed, not retried; units/s counts committed units over the wall time of the slowest
process (in *mixed*, readers and writers are timed apart). Modes run in rotating order round by round; figures are medians over rounds.
Progress goes to stderr; the table to stdout, and the last stdout line is one JSON
object with every figure and ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from provenance import code_state, machine
from sqlalchemy.orm import Session

import dbcore
from dbcore.dialects import READ_ONLY_OPTION

PROCESSES = 4
SEED_ROWS = 1_000
START_DELAY = 3.0  # seconds between handing out the jobs and the common start instant

metadata = sa.MetaData()
tallies = sa.Table(
    "tallies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("worker", sa.Integer, nullable=False),
    sa.Column("seen", sa.Integer, nullable=False),
)

# (workload, what each of the 4 processes runs as (unit, mode)), per mode compared.
WORKLOADS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "read_then_write": {
        "deferred (old)": [("read_then_write", "deferred")] * 4,
        "immediate (new)": [("read_then_write", "immediate")] * 4,
    },
    "write_only": {
        "deferred (old)": [("write", "deferred")] * 4,
        "immediate (new)": [("write", "immediate")] * 4,
    },
    "read_only": {
        "deferred (old)": [("read", "deferred")] * 4,
        "immediate (new default)": [("read", "immediate")] * 4,
        "read_only=True (new)": [("read", "read_only")] * 4,
    },
    "mixed": {
        "readers default": [("read", "immediate")] * 2 + [("read_then_write", "immediate")] * 2,
        "readers read_only=True": [("read", "read_only")] * 2 + [("read_then_write", "immediate")] * 2,
    },
}
BASELINES = {
    "read_then_write": "deferred (old)",
    "write_only": "deferred (old)",
    "read_only": "deferred (old)",
    "mixed": "readers default",
}

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --- in each worker process ------------------------------------------------------------------

_deferred_engines: dict[str, sa.Engine] = {}


@contextmanager
def deferred_session(settings: dbcore.Settings) -> Iterator[Session]:
    """The old behaviour: get_session() semantics on a deferred BEGIN."""
    engine = _deferred_engines.get(settings.database_url)
    if engine is None:
        engine = dbcore.get_engine(settings).execution_options(**{READ_ONLY_OPTION: True})
        _deferred_engines[settings.database_url] = engine
    session = Session(bind=engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def open_session(settings: dbcore.Settings, mode: str) -> Any:
    if mode == "deferred":
        return deferred_session(settings)
    return dbcore.get_session(settings, read_only=mode == "read_only")


def run_unit(session: Session, unit: str, worker: int, i: int) -> None:
    if unit == "write":
        session.execute(tallies.insert().values(worker=worker, seen=-1))
        return
    last = session.scalar(sa.select(sa.func.max(tallies.c.id))) or 0
    if unit == "read":
        session.scalar(sa.select(tallies.c.seen).where(tallies.c.id == 1 + (i * 7919) % SEED_ROWS))
    else:
        session.execute(tallies.insert().values(worker=worker, seen=last))


def work(url: str, unit: str, mode: str, worker: int, units: int, start_at: float) -> dict[str, Any]:
    """One process's share: ``units`` units from the common start instant; committed, failed, seconds."""
    settings = dbcore.Settings(database_url=url)
    with open_session(settings, mode) as session:  # connect and warm up before the clock starts
        session.scalar(sa.select(sa.func.count()).select_from(tallies))
    late = max(0.0, time.time() - start_at)
    time.sleep(max(0.0, start_at - time.time()))
    committed = failed = 0
    for i in range(units):
        try:
            with open_session(settings, mode) as session:
                run_unit(session, unit, worker, i)
            committed += 1
        except dbcore.ConcurrencyError:
            failed += 1
    seconds = time.time() - start_at
    dbcore.dispose_engines()
    _deferred_engines.clear()
    return {"unit": unit, "mode": mode, "committed": committed, "failed": failed, "seconds": seconds, "late": late}


def warm() -> None:
    """Pool initializer: the imports happen here, not in the first timed job."""
    dbcore.get_session  # noqa: B018 - loads dbcore's lazy names


# --- in the parent ---------------------------------------------------------------------------


def fresh_file(directory: Path, name: str) -> str:
    url = f"sqlite:///{directory / name}.sqlite3"
    engine = dbcore.create_engine(dbcore.Settings(database_url=url))
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(tallies.insert(), [{"worker": -1, "seen": 0} for _ in range(SEED_ROWS)])
    engine.dispose()
    return url


def run_once(pool: Pool, url: str, jobs: Sequence[tuple[str, str]], units: int) -> dict[str, Any]:
    """One run of ``jobs`` on ``url``, repeated when a process started late (its figures would be wrong)."""
    for _ in range(3):
        start_at = time.time() + START_DELAY
        args = [(url, unit, mode, worker, units, start_at) for worker, (unit, mode) in enumerate(jobs)]
        shares = pool.starmap(work, args, chunksize=1)
        late = max(s["late"] for s in shares)
        if not late:
            break
        log(f"a process started {late:.2f}s late; running again")
    readers = [s for s in shares if s["unit"] == "read"]
    writers = [s for s in shares if s["unit"] != "read"]
    return {
        "units_per_s": rate(shares),
        "failed": sum(s["failed"] for s in shares),
        "units": len(shares) * units,
        "reader_units_per_s": rate(readers),
        "writer_units_per_s": rate(writers),
        "seconds": max(s["seconds"] for s in shares),
    }


def rate(shares: list[dict[str, Any]]) -> float | None:
    """Committed units per second of these processes, over the time the slowest of them took."""
    if not shares:
        return None
    return sum(s["committed"] for s in shares) / max(s["seconds"] for s in shares)


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "units_per_s": median_of(runs, "units_per_s"),
        "reader_units_per_s": median_of(runs, "reader_units_per_s"),
        "writer_units_per_s": median_of(runs, "writer_units_per_s"),
        "failed": [r["failed"] for r in runs],
        "units_per_run": runs[0]["units"],
    }


def bench(pool: Pool, directory: Path, units: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for workload, modes in WORKLOADS.items():
        names = list(modes)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                url = fresh_file(directory, f"{workload}-{r}-{names.index(name)}")
                runs[name].append(run_once(pool, url, modes[name], units))
                log(
                    f"{workload:<16} {name:<24} round {r + 1}: {runs[name][-1]['units_per_s']:8.0f} units/s, "
                    f"{runs[name][-1]['failed']} failed"
                )
        summary = {name: summarize(runs[name]) for name in names}
        base = summary[BASELINES[workload]]
        for name in names:
            for key in ("units_per_s", "reader_units_per_s", "writer_units_per_s"):
                value, reference = summary[name][key], base[key]
                summary[name][key.replace("units_per_s", "ratio")] = value / reference if value and reference else None
        results[workload] = summary
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'workload':<16} {'mode':<24} {'units/s':>9} {'x base':>7} {'readers/s':>10} {'x base':>7} "
        f"{'writers/s':>10} {'failed per run':>16}"
    ]

    def cell(value: float | None, spec: str, width: int) -> str:
        return f"{value:{width}{spec}}" if value is not None else " " * (width - 1) + "-"

    for workload, summary in results["workloads"].items():
        for name, s in summary.items():
            lines.append(
                f"{workload:<16} {name:<24} {cell(s['units_per_s'], '.0f', 9)} {cell(s['ratio'], '.2f', 7)} "
                f"{cell(s['reader_units_per_s'], '.0f', 10)} {cell(s['reader_ratio'], '.2f', 7)} "
                f"{cell(s['writer_units_per_s'], '.0f', 10)} "
                f"{'/'.join(map(str, s['failed'])) + ' of ' + str(s['units_per_run']):>16}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, default=300, help="units of work per process per run (default 300)")
    p.add_argument("--rounds", type=int, default=3, help="runs of every mode; medians over them (default 3)")
    args = p.parse_args(argv)
    results: dict[str, Any] = {
        "benchmark": "dbcore sqlite concurrency",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"processes": PROCESSES, "units": args.units, "rounds": args.rounds, "seed_rows": SEED_ROWS},
        "machine": machine(sqlite=sqlite3.sqlite_version, sqlalchemy=sa.__version__),
        "commit": code_state()["commit"],
    }
    with (
        tempfile.TemporaryDirectory(prefix="dbcore-sqlite-bench-") as tmp,
        multiprocessing.get_context("spawn").Pool(PROCESSES) as pool,
    ):
        pool.starmap(time.sleep, [(1.0,)] * PROCESSES, chunksize=1)  # every worker up and imported
        results["workloads"] = bench(pool, Path(tmp), args.units, args.rounds)
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["run_seconds"] = round(time.perf_counter() - T0, 1)
    print(table(results))
    print(json.dumps(results, default=str, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
