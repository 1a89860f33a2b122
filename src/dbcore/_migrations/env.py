"""dbcore's alembic environment: :func:`dbcore.migrate.run_env` holds it, so a downstream project reuses it."""

from dbcore.migrate import run_env

run_env()
