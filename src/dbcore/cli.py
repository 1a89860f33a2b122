"""The ``dbcore`` command: init, migrate, seed, doctor, check-models, schema, vectors import|sync|verify|reindex.

Exit codes: 0 success, 1 unhealthy or failed (a database never migrated, for seed
and vectors), 2 configuration or usage error (bad URL, missing driver extra, a
revision dbcore's migrations do not hold), 3 database unreachable.
"""

from __future__ import annotations

import argparse
import os
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


_TOP_EXAMPLES = """\
examples:
  dbcore init                      create or upgrade the schema, seed it, make the first system key
  dbcore doctor                    check the connection, pool, vectors and pending migrations
  DATABASE_URL=postgresql+psycopg://app@db/app dbcore migrate
  dbcore vectors verify            compare an external vector store with the database
  dbcore schema --mermaid          draw the tables and their foreign keys (docs/schema.md)

Run `dbcore COMMAND --help` for what one command does and its options.
"""


def _subcommand(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    examples: Sequence[str],
) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does and shows a command to copy, not only a usage line."""
    epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = _subcommand(
        commands,
        "init",
        "migrate to head, seed, record the vector space and make the first system key",
        "Set up the database in one step: upgrade the schema to the newest revision, insert the\n"
        "seed rows, record the memory vector space (dims and metric), and make a system API key\n"
        "the first time (shown once). Safe to run again: a second run changes nothing.",
        [
            "dbcore init",
            "DATABASE_URL=postgresql+psycopg://app@db/app dbcore init",
            "dbcore init --alembic-ini alembic.ini   also your project's migrations and seed rows",
        ],
    )
    migrate = _subcommand(
        commands,
        "migrate",
        "upgrade (or downgrade) the schema",
        "Upgrade the schema to a revision (the newest, head, when none is given; every head,\n"
        "dbcore's and yours, with --alembic-ini), or with --down\n"
        "downgrade to one. With --sql, print the SQL instead of running it.",
        [
            "dbcore migrate                  upgrade to the newest revision",
            "dbcore migrate --down -1        undo the last revision",
            "dbcore migrate --sql > up.sql   write the upgrade SQL for a DBA to run",
        ],
    )
    migrate.add_argument("revision", nargs="?", help="target revision (default: head; required with --down)")
    migrate.add_argument(
        "--down", action="store_true", help="downgrade to the revision (an id, -1 for one step, or base)"
    )
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it (offline mode)")
    seed = _subcommand(
        commands,
        "seed",
        "insert or update the seed rows (idempotent)",
        "Insert or update the rows every dbcore database needs (the seed lists, such as the\n"
        "activity types) and say how many were inserted, updated or already right. Running it\n"
        "again changes nothing. The schema must be migrated first (dbcore init or migrate).",
        ["dbcore seed"],
    )
    doctor = _subcommand(
        commands,
        "doctor",
        "connection, server version, pool, pgvector, vector dims, pending migrations",
        "Check that the database answers and report what a person needs to judge its health:\n"
        "server version, connections in use, pgvector, the vector size and pending migrations.\n"
        "Exits 0 when healthy, 1 when migrations are pending, 3 when the database cannot be reached.",
        ["dbcore doctor", "DATABASE_URL=mysql+pymysql://app@db/app dbcore doctor"],
    )
    check_models = _subcommand(
        commands,
        "check-models",
        "check dbcore's models against the rules of docs/patterns.md",
        "Check dbcore's table models against the rules of docs/patterns.md (primary key type,\n"
        "an index on every foreign key, a comment on every column, enums stored as enums) and\n"
        "list every problem. Needs no database. Exits 1 if any are found.",
        ["dbcore check-models"],
    )
    schema = _subcommand(
        commands,
        "schema",
        "print an entity-relationship diagram of the tables (Mermaid)",
        "Print dbcore's tables, their columns and foreign keys as a Mermaid erDiagram\n"
        "(docs/schema.md), with the tables of each --models module besides. Needs no database.",
        [
            "dbcore schema --mermaid > schema.mmd",
            "dbcore schema --mermaid --models myapp.models   also your project's tables",
        ],
    )
    output = schema.add_mutually_exclusive_group(required=True)
    output.add_argument("--mermaid", action="store_true", help="a Mermaid erDiagram (the one format for now)")
    schema.add_argument(
        "--models",
        action="append",
        metavar="PKG.MODULE",
        help="a module of your models to import and draw too (repeatable); found from the working directory",
    )
    for command in (init, migrate, seed, doctor, check_models):
        command.add_argument(
            "--alembic-ini",
            metavar="FILE",
            help="your project's alembic.ini (docs/migrations.md): use its migrations, dbcore's and yours, "
            "and the models its dbcore_models names, besides dbcore's",
        )
    vectors = _subcommand(
        commands,
        "vectors",
        "import memories with embeddings; external vector store upkeep: sync, verify, reindex",
        "Import memories in bulk, or keep an external vector store (DBCORE_VECTOR_BACKEND=chroma\n"
        "or pinecone) in step with the memories in the database.\n"
        "  import   load a JSON Lines file of memories (one object per line: agent_id, entity_id,\n"
        "           room_id, kind, content, embedding, ...) in one transaction: all or nothing;\n"
        "           COPY on PostgreSQL, with the vector index built after a large load\n"
        "  sync     send the pending changes the database has queued for the store\n"
        "  verify   compare the store with the database and list drift (exit 1 if any)\n"
        "  reindex  rebuild the store from the database rows, deleting orphans.\n"
        "With the integrated backend, sync, verify and reindex have nothing to do.",
        [
            "dbcore vectors import memories.jsonl --model all-MiniLM-L6-v2",
            "dbcore vectors sync",
            "dbcore vectors verify",
            "dbcore vectors reindex --batch-size 200",
        ],
    )
    vectors.add_argument(
        "action",
        choices=["import", "sync", "verify", "reindex"],
        help="import: load FILE; sync: finish pending outbox work; verify: report drift (exit 1); "
        "reindex: rebuild from the rows",
    )
    vectors.add_argument("file", nargs="?", metavar="FILE", help="import: the JSON Lines file of memories")
    vectors.add_argument("--model", default="", help="import: the name of the model that made the embeddings")
    vectors.add_argument(
        "--batch-size", type=_positive_int, default=500, help="memories per store request batch (default 500)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dbcore",
        description="dbcore: the data layer of an AI-agent platform. The database comes from DATABASE_URL\n"
        "(or POSTGRES_URL); without it, an SQLite file dbcore.sqlite3 in the working directory.",
        epilog=_TOP_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(commands)
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
    if args.command == "vectors" and (args.action == "import") != (args.file is not None):
        if args.file is None:
            parser.error("vectors import needs the FILE to import: dbcore vectors import memories.jsonl")
        parser.error(f"vectors {args.action} takes no FILE; only import reads one")
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
        if args.command in ("check-models", "schema"):  # no database: no settings to read
            return commands.COMMANDS[args.command](None, args)
        settings = Settings.from_env()
        return commands.COMMANDS[args.command](settings, args)
    except commands.ModelsNotImportable as exc:
        print(f"dbcore: {exc}", file=sys.stderr)
        return commands.EXIT_CONFIG
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
    except BrokenPipeError:
        # The reader went away (`dbcore doctor | head -1`): say so once; nothing more goes to the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"dbcore {args.command}: the output was closed before the command finished", file=sys.stderr)
        return commands.EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
