"""What a test database holds, read with a throwaway engine so no pooled connection stays behind."""

from __future__ import annotations

import sqlalchemy as sa

import dbcore


def table_names(settings: dbcore.Settings) -> set[str]:
    """The tables of the database ``settings`` names."""
    engine = dbcore.create_engine(settings, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
