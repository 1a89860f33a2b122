"""Alembic environment of a downstream project whose migrations build on dbcore's.

The recipe
----------

1. Models go on their own base, ``DownstreamBase = dbcore.make_base("DownstreamBase")``
   (dbcore's naming convention and types, its own ``MetaData``). Keys to dbcore
   tables name the column object, ``sa.ForeignKey(dbcore.Agent.id)``, and
   relationships name the class, ``relationship(dbcore.Agent, backref="notes")``.

2. One history, one ``alembic_version`` table: this env reads the revisions from
   BOTH dbcore's scripts and the project's own (``version_locations`` below), so
   ``alembic upgrade heads`` applies dbcore's tables first, then the project's.

3. The project's revisions form their own branch. The first one has
   ``down_revision = None``, ``branch_labels = ("downstream",)`` and
   ``depends_on = "0001"`` (dbcore's initial schema; name dbcore's latest
   revision the project needs). Later ones chain on it as usual; make them with
   ``alembic revision --autogenerate --head downstream@head -m "..."``.
   dbcore's history and the project's stay two heads, so a new dbcore release
   needs no merge revision: upgrade with ``heads`` (plural), downgrade with
   ``base``.

4. The environment is dbcore's own, :func:`dbcore.migrate.run_env`, given the
   project's metadata: autogenerate compares ``[dbcore.Base.metadata,
   DownstreamBase.metadata]``, with dbcore's ``include_object``, ``render_item``,
   ``prepare_connection`` (creates pgvector on PostgreSQL, which dbcore's 0001
   relies on) and ``render_as_batch`` on SQLite. (docs/migrations.md's recipe
   needs no env.py of its own: its alembic.ini names dbcore's environment and
   the model modules, ``dbcore_models``; this example shows the other way.)

The database URL comes from dbcore's settings (``DATABASE_URL``, ``POSTGRES_URL``,
else the SQLite default), or from ``config.attributes["dbcore_settings"]`` when
alembic is driven from Python.

Because ``alembic_version`` then also holds the project's revision, dbcore's own
command (``dbcore migrate``/``doctor``/``init``) needs this alembic.ini to know
every row of it: ``dbcore init --alembic-ini tests/downstream_example/alembic.ini``.
"""

from tests.downstream_example.models import DownstreamBase

from dbcore.migrate import run_env

run_env(DownstreamBase.metadata)
