"""The ``dbcore`` command: init, migrate, seed, doctor, check-models, vectors sync|verify|reindex.

Exit codes: 0 success, 1 unhealthy or failed (a database never migrated, for seed
and vectors), 2 configuration or usage error (bad URL, missing driver extra, a
revision dbcore's migrations do not hold), 3 database unreachable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dbcore.config import Settings
from dbcore.errors import ConfigurationError, DbcoreError

__all__ = ["main"]


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a batch of 0 or fewer rows would do nothing, or fail)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dbcore",
        description="dbcore: the data layer of an AI-agent platform. The database comes from DATABASE_URL "
        "(or POSTGRES_URL); without it, an SQLite file dbcore.sqlite3 in the working directory.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("init", help="migrate to head, seed, record the vector space and make the first system key")
    migrate = commands.add_parser("migrate", help="upgrade (or downgrade) the schema")
    migrate.add_argument("revision", nargs="?", help="target revision (default: head; required with --down)")
    migrate.add_argument(
        "--down", action="store_true", help="downgrade to the revision (an id, -1 for one step, or base)"
    )
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it (offline mode)")
    commands.add_parser("seed", help="apply every seed_list (idempotent)")
    commands.add_parser("doctor", help="connection, server version, pgvector, vector dims, pending migrations")
    commands.add_parser("check-models", help="check dbcore's models against the rules of docs/patterns.md")
    vectors = commands.add_parser("vectors", help="external vector store upkeep: sync, verify, reindex")
    vectors.add_argument(
        "action",
        choices=["sync", "verify", "reindex"],
        help="sync: finish pending outbox work; verify: report drift (exit 1); reindex: rebuild from the rows",
    )
    vectors.add_argument(
        "--batch-size", type=_positive_int, default=500, help="memories per store request batch (default 500)"
    )
    return parser


#: commands.EXIT_CONFIG, for the one error raised before commands is loaded.
_EXIT_CONFIG = 2


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "migrate" and args.revision is None:
        if args.down:
            # Going down to "head" is no move at all; guessing a step could drop tables.
            parser.error("migrate --down needs a revision: an id such as 0001, -1 for one step, or base for none")
        args.revision = "head"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    # Loaded after parsing: --help and usage errors need no database code (benchmarks/import_time.py).
    try:
        from dbcore import commands
    except ConfigurationError as exc:  # a setting read while the models load (DBCORE_VECTOR_DIMS)
        print(f"dbcore {args.command}: configuration error: {exc}", file=sys.stderr)
        return _EXIT_CONFIG

    try:
        if args.command == "check-models":
            return commands.cmd_check_models(None, args)
        settings = Settings.from_env()
        return commands.COMMANDS[args.command](settings, args)
    except commands.MigrationError as exc:
        print(f"dbcore {args.command}: {exc}", file=sys.stderr)
        return commands.EXIT_CONFIG
    except commands.SchemaMissing as exc:
        print(f"dbcore {args.command}: {exc}", file=sys.stderr)
        return commands.EXIT_FAILED
    except ConfigurationError as exc:
        print(f"dbcore {args.command}: configuration error: {exc}", file=sys.stderr)
        return commands.EXIT_CONFIG
    except commands.Unreachable as exc:
        print(f"dbcore {args.command}: {exc}", file=sys.stderr)
        return commands.EXIT_UNREACHABLE
    except DbcoreError as exc:
        print(f"dbcore {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return commands.EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
