"""An example dbcore plugin: one table of journal entries, on its own alembic branch."""

from pathlib import Path

import dbcore

plugin = dbcore.Plugin(
    name="journal",
    migrations=Path(__file__).parent / "migrations",
    models=("dbcore_journal.models",),
)
