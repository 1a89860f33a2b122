"""A tiny downstream project built on dbcore: its own models and its own alembic environment."""
