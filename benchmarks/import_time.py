#!/usr/bin/env python
"""Import-time benchmark: what ``import dbcore`` and the ``dbcore`` command cost at start-up.

Every program that uses dbcore pays for importing it, and so does every ``dbcore``
command, even ``--help``. The floor is SQLAlchemy's ORM, which dbcore builds on, so
the figures are measured against ``import sqlalchemy.orm`` run the same way.

Run from the repository root with the interpreter of the environment dbcore is
installed in::

    python benchmarks/import_time.py              # best of 10 fresh processes per command
    python benchmarks/import_time.py --runs 20

Each command runs in a fresh child process (``sys.executable``), timed with
``time.perf_counter`` around the whole child, interpreter start-up included:

1. ``python -c "import sqlalchemy.orm"`` (the baseline);
2. ``python -c "import dbcore"``, and ``from dbcore import get_session, Memory``
   (names load on first use, so this is what a working service pays; no target);
3. ``dbcore --help`` (the console script next to ``sys.executable``, else
   ``python -m dbcore.cli``);
4. ``dbcore doctor`` on a temporary SQLite file that ``dbcore init`` migrated and
   seeded once, untimed, beforehand.

Every command runs once untimed first (bytecode and file caches), then the timed
rounds run each command once, the one that goes first changing from round to round
so neither drift nor caches favour one. The children run in the temporary directory
with this checkout's ``src`` first on ``PYTHONPATH``, so the figures belong to this
checkout whichever dbcore is installed. Best and median per command; the ratios and
targets use the best. Progress goes to stderr; the table to stdout, and the last
stdout line is one JSON object with every figure, ratio and verdict. The exit
status is 0 whatever the verdicts, and non-zero only when a command fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from provenance import code_state, machine

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "import_sqlalchemy_orm"
TARGETS = {"import_dbcore_ratio_max": 1.5, "help_ratio_max": 2.0}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    return parser.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dbcore_command() -> tuple[list[str], str]:
    """How to start the ``dbcore`` command, and which way was found."""
    script = Path(sys.executable).with_name("dbcore")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], f"console script {script}"
    return [sys.executable, "-m", "dbcore.cli"], "python -m dbcore.cli (no console script next to the interpreter)"


def child_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    env["DATABASE_URL"] = f"sqlite:///{tmp / 'x.sqlite3'}"
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Run one child; its wall time in ms and its stdout. A failing command ends the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    ms = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return ms, done.stdout


def contenders(cli: list[str]) -> dict[str, tuple[str, list[str]]]:
    py = sys.executable
    return {
        BASELINE: ('python -c "import sqlalchemy.orm" (baseline)', [py, "-c", "import sqlalchemy.orm"]),
        "import_dbcore": ('python -c "import dbcore"', [py, "-c", "import dbcore"]),
        # import dbcore loads names on first use: this is what a service pays once it starts working.
        "first_use": (
            'python -c "from dbcore import get_session, Memory"',
            [py, "-c", "from dbcore import get_session, Memory"],
        ),
        "help": ("dbcore --help", [*cli, "--help"]),
        "doctor": ("dbcore doctor (SQLite file, after init)", [*cli, "doctor"]),
    }


def time_rounds(
    commands: dict[str, tuple[str, list[str]]], runs: int, env: dict[str, str], cwd: Path
) -> dict[str, list[float]]:
    keys = list(commands)
    times: dict[str, list[float]] = {key: [] for key in keys}
    for key in keys:
        run(commands[key][1], env, cwd)
    for i in range(runs):
        log(f"round {i + 1}/{runs}")
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            times[key].append(run(commands[key][1], env, cwd)[0])
    return times


def summarise(commands: dict[str, tuple[str, list[str]]], times: dict[str, list[float]]) -> dict[str, Any]:
    best_base = min(times[BASELINE])
    median_base = statistics.median(times[BASELINE])
    return {
        key: {
            "label": commands[key][0],
            "argv": commands[key][1],
            "best_ms": round(min(times[key]), 1),
            "median_ms": round(statistics.median(times[key]), 1),
            "ratio": round(min(times[key]) / best_base, 3),
            "median_ratio": round(statistics.median(times[key]) / median_base, 3),
            "runs_ms": [round(t, 1) for t in times[key]],
        }
        for key in commands
    }


def checks(results: dict[str, Any]) -> dict[str, Any]:
    pairs = {"import_dbcore_ratio": "import_dbcore_ratio_max", "help_ratio": "help_ratio_max"}
    out = {}
    for name, target_key in pairs.items():
        value = results[name.removesuffix("_ratio")]["ratio"]
        target = TARGETS[target_key]
        out[name] = {"value": value, "target": f"<= {target}", "pass": value <= target}
    return out


def table(results: dict[str, Any], runs: int) -> str:
    lines = [
        f"dbcore import-time benchmark: {runs} fresh processes per command, best (median)",
        "",
        f"{'command':<46} {'best ms':>9} {'median ms':>10} {'x baseline':>11} {'(median)':>9}",
        "-" * 89,
    ]
    for key in (BASELINE, "import_dbcore", "help", "doctor"):
        c = results[key]
        lines.append(
            f"{c['label']:<46} {c['best_ms']:>9.1f} {c['median_ms']:>10.1f} {c['ratio']:>11.2f} {c['median_ratio']:>9.2f}"
        )
    lines += ["", "Targets (best against best):"]
    for name, check in results["checks"].items():
        verdict = "PASS" if check["pass"] else "FAIL"
        lines.append(f"  {verdict}  {name:<22} {check['value']:>6.2f}  (target {check['target']})")
    code, mach = results["code"], results["machine"]
    lines += [
        "",
        f"dbcore command: {results['config']['dbcore_command']}; dbcore imported from {results['config']['dbcore_file']}",
        f"dbcore at commit {(code['commit'] or '?')[:10]} ({code['subject']}){' + uncommitted src changes' if code['src_modified'] else ''}",
        f"{mach['cpu']}, {mach['cores']} cores, Python {mach['python']}; load average (1/5/15 min) "
        f"at start {mach['load_avg_at_start']}, at end {mach['load_avg_at_end']}",
    ]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    t0 = time.perf_counter()
    cli, how = dbcore_command()
    results: dict[str, Any] = {
        "benchmark": "dbcore import time",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {
            "runs": args.runs,
            "untimed_first_runs": 1,
            "order": "each round runs every command once, the first one rotating from round to round",
            "timer": "time.perf_counter around subprocess.run of a fresh child; ratios from the best of the runs",
            "dbcore_command": how,
        },
        "machine": machine(),
        "code": code_state(("src",)),
        "targets": TARGETS,
    }
    tmp = Path(tempfile.mkdtemp(prefix="dbcore-import-bench-"))
    try:
        env = child_env(tmp)
        found = run([sys.executable, "-c", "import dbcore; print(dbcore.__file__)"], env, tmp)[1]
        results["config"]["dbcore_file"] = found.strip()
        log(f"dbcore init on {env['DATABASE_URL']} (untimed)")
        run([*cli, "init"], env, tmp)
        commands = contenders(cli)
        results |= summarise(commands, time_rounds(commands, args.runs, env, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["checks"] = checks(results)
    results["all_pass"] = all(c["pass"] for c in results["checks"].values())
    results["run_seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(table(results, args.runs))
    print(json.dumps(results, default=str, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
