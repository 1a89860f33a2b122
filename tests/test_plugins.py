"""Plugin schemas: a package registers its models and revisions under ``dbcore.plugins``.

The example plugin in ``tests/plugin_example/site`` (a package and its dist-info, as
``pip install`` leaves them) is installed by putting that folder on the path. In
process, ``DatabaseAdapter.init()`` migrates it on every live dialect, both classes;
as a subprocess, the ``dbcore`` command does, and says what it does when the plugin
is uninstalled or broken.
"""

from __future__ import annotations

import importlib
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import dbcore
from dbcore import migrate
from dbcore.plugins import registered_plugins
from tests.api_modes import AdapterView, LoopRunner
from tests.test_cli import base_env, explain, run

SITE = Path(__file__).parent / "plugin_example" / "site"
PLUGIN_TABLES = {"journal_kinds", "journal_entries"}


def _install(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example plugin, installed for this test only."""
    _install(monkeypatch, SITE)
    yield
    importlib.invalidate_caches()


def _fake_package(root: Path, name: str, *, entry: str, files: dict[str, str]) -> Path:
    """A package folder plus its dist-info registering ``entry`` under dbcore.plugins, as pip would leave them."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[dbcore.plugins]\n{entry}\n")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_entry_point_registers_the_plugin(journal: None) -> None:
    [plugin] = registered_plugins()
    assert plugin.name == "journal"
    assert plugin.migrations == (SITE / "dbcore_journal" / "migrations").resolve()
    assert plugin.models == ("dbcore_journal.models",)
    assert set(migrate.head_revisions()) == {"0003", "j001"}
    assert migrate.head_revision() == "0003"  # dbcore's own head
    assert PLUGIN_TABLES <= {name for metadata in migrate.project_metadata() for name in metadata.tables}
    assert PLUGIN_TABLES.isdisjoint(dbcore.Base.metadata.tables)  # dbcore's own schema is untouched


def test_without_the_package_there_is_no_plugin() -> None:
    assert registered_plugins() == ()
    assert migrate.head_revisions() == ("0003",)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_init_migrates_and_seeds_each_plugin_on_its_own_branch(
    journal: None, settings: dbcore.Settings, mode: str, request: pytest.FixtureRequest
) -> None:
    loop: LoopRunner | None = request.getfixturevalue("aio") if mode == "async" else None
    made = dbcore.DatabaseAdapter(settings) if loop is None else dbcore.AsyncDatabaseAdapter(settings)
    adapter = AdapterView(made, loop)
    try:
        report = adapter.init()
        # alembic records heads only: the plugin's j001 depends on dbcore's 0003 and stands for it.
        assert report.revisions == ("j001",)
        assert report.seeded_rows == 3 + 2  # dbcore's activity types and the plugin's journal kinds
        engine = dbcore.get_engine(settings)
        assert PLUGIN_TABLES <= set(sa.inspect(engine).get_table_names())
        assert adapter.init().seeded_rows == 0  # idempotent

        from dbcore_journal.models import JournalEntry, JournalKind

        agent = adapter.create_agent("Diarist")
        with dbcore.get_session(settings) as session:
            kind = session.scalars(sa.select(JournalKind).where(JournalKind.name == "plan")).one()
            session.add(JournalEntry(agent_id=agent.id, kind_id=kind.id, text="bake on Sunday"))
        # The plugin's rows reference dbcore's agents: deleting the agent takes them too (ON DELETE CASCADE).
        adapter.delete_agent(agent.id)
        with engine.connect() as connection:
            assert connection.scalar(sa.select(sa.func.count()).select_from(JournalEntry)) == 0

        # The plugin's branch goes down on its own; dbcore's tables stay.
        migrate.downgrade(settings, "journal@base")
        dbcore.dispose_engines()
        tables = set(sa.inspect(dbcore.get_engine(settings)).get_table_names())
        assert PLUGIN_TABLES.isdisjoint(tables) and "agents" in tables
        assert migrate.current_heads(settings) == ("0003",)
    finally:
        made.close() if loop is None else loop.run(made.close())


def test_the_command_line_migrates_plugins_and_names_an_uninstalled_one(tmp_path: Path) -> None:
    installed = base_env(PYTHONPATH=str(SITE))
    init = run(["init"], tmp_path, installed)
    assert init.returncode == 0, explain(init)
    assert "schema: revision j001, with dbcore at 0003 (migrated from an empty database)" in init.stdout, explain(init)
    assert "tables: 23" in init.stdout and "seed rows: 5 inserted" in init.stdout, explain(init)
    doctor = run(["doctor"], tmp_path, installed)
    assert doctor.returncode == 0 and doctor.stdout.strip().endswith("healthy"), explain(doctor)

    uninstalled = run(["doctor"], tmp_path, base_env())
    assert uninstalled.returncode != 0 and uninstalled.stdout.count("\n") < 8, explain(uninstalled)
    [line] = uninstalled.stderr.strip().splitlines()
    assert "records revision 'j001'" in line and "a plugin that was uninstalled" in line, line


def test_a_plugin_that_fails_to_load_is_one_line(tmp_path: Path) -> None:
    site = _fake_package(tmp_path / "site", "broken_plugin", entry="broken = broken_plugin:plugin", files={})
    result = run(["migrate"], tmp_path, base_env(PYTHONPATH=str(site)))
    assert result.returncode == 2, explain(result)
    assert result.stderr.strip() == (
        "dbcore migrate: configuration error: the dbcore plugin 'broken' (broken_plugin:plugin) cannot be loaded: "
        "ModuleNotFoundError: No module named 'broken_plugin'"
    ), explain(result)


def test_a_history_without_its_branch_label_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    revision = """\
        revision = "u001"
        down_revision = None
        branch_labels = None
        depends_on = "0003"


        def upgrade():
            raise AssertionError("must not run")
        """
    package = """\
        from pathlib import Path

        import dbcore

        plugin = dbcore.Plugin(name="unlabelled", migrations=Path(__file__).parent / "versions")
        """
    site = _fake_package(
        tmp_path / "site",
        "unlabelled_plugin",
        entry="unlabelled = unlabelled_plugin:plugin",
        files={"unlabelled_plugin/__init__.py": package, "unlabelled_plugin/versions/u001_x.py": revision},
    )
    _install(monkeypatch, site)
    settings = dbcore.Settings(database_url=f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with pytest.raises(dbcore.MigrationError, match=r"plugin 'unlabelled': revision u001 \(u001_x.py\) starts"):
        migrate.upgrade(settings)
    assert migrate.missing_tables(settings)  # nothing was migrated, dbcore's tables included


@pytest.mark.parametrize(
    ("entry", "package", "message"),
    [
        ("other = p:plugin", "plugin = dbcore.Plugin(name='mine', migrations=HERE)", "holds the plugin 'mine'"),
        ("p = p:plugin", "plugin = 42", "is a int, not a dbcore.Plugin"),
        (
            "p = p:plugin",
            "plugin = dbcore.Plugin(name='p', migrations=HERE / 'none')",
            "migrations folder .* not exist",
        ),
        ("p = p:plugin", "plugin = dbcore.Plugin(name='Bad-Name', migrations=HERE)", "name='Bad-Name' must be"),
        ("p = p:make", "def make():\n    return dbcore.Plugin(name='p', migrations=HERE, models=[1])", "models must"),
    ],
)
def test_bad_registrations_name_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, package: str, message: str
) -> None:
    name = f"p{uuid.uuid4().hex[:8]}"  # a module name no other case imported
    code = f"from pathlib import Path\n\nimport dbcore\n\nHERE = Path(__file__).parent\n{package}\n"
    site = _fake_package(tmp_path / "site", name, entry=entry.replace("p:", f"{name}:"), files={f"{name}.py": code})
    _install(monkeypatch, site)
    with pytest.raises(dbcore.ConfigurationError, match=message):
        registered_plugins()
