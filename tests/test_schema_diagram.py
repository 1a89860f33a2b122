"""``dbcore schema --mermaid``: the diagram of the models, and the copy of it in docs/schema.md. No database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import dbcore
import dbcore.models  # noqa: F401  (every table on Base.metadata)
from dbcore.diagram import mermaid

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "schema.md"
DBCORE = Path(sys.executable).parent / "dbcore"
REGENERATE = "dbcore schema --mermaid"

RUNS = {
    "downstream": ["schema", "--mermaid", "--models", "tests.downstream_example.models"],
    "missing module": ["schema", "--mermaid", "--models", "no_such_module_xyz"],
    "no format": ["schema"],
}


def documented_diagram() -> str:
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- schema:begin -->\n```mermaid\n(.*?)```\n<!-- schema:end -->", text, re.DOTALL)
    assert found, "docs/schema.md has no ```mermaid block between <!-- schema:begin --> and <!-- schema:end -->"
    return found.group(1)


def test_docs_hold_the_current_diagram() -> None:
    assert documented_diagram() == mermaid(dbcore.Base.metadata), (
        f"docs/schema.md is out of date: regenerate with `{REGENERATE}` (from the repository root) "
        "and paste its output between ```mermaid and ``` inside <!-- schema:begin --> ... <!-- schema:end -->"
    )


def test_every_table_and_foreign_key_is_drawn() -> None:
    lines = mermaid(dbcore.Base.metadata).splitlines()
    assert lines[0] == "erDiagram"
    tables = dbcore.Base.metadata.tables.values()
    assert tables
    for table in tables:
        assert f"    {table.name} {{" in lines, f"table {table.name} is not an entity"
        for constraint in table.foreign_key_constraints:
            label = ", ".join(column.name for column in constraint.columns)
            cardinality = "o|" if any(column.nullable for column in constraint.columns) else "||"
            expected = f'    {table.name} }}o--{cardinality} {constraint.referred_table.name} : "{label}"'
            assert expected in lines, f"foreign key {table.name}.{label} is not a relationship"
    relationships = [line for line in lines if "}o--" in line]
    assert len(relationships) == sum(len(t.foreign_key_constraints) for t in tables)


def test_columns_types_keys_and_comments() -> None:
    metadata = sa.MetaData()
    sa.Table("parents", metadata, sa.Column("id", sa.Uuid, primary_key=True))
    sa.Table(
        "children",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey("parents.id"), nullable=False, comment='The "parent".'),
        sa.Column("other_id", sa.ForeignKey("parents.id"), nullable=True),
        sa.Column("price", sa.Numeric(10, 2)),
        sa.Column("id_ref", sa.ForeignKey("children.id"), primary_key=True),
    )
    sa.Table("lonely", metadata, sa.Column("payload", sa.PickleType))
    assert mermaid(metadata) == (
        "erDiagram\n"
        "    children {\n"
        "        integer id PK\n"
        "        uuid parent_id FK \"The 'parent'.\"\n"
        "        uuid other_id FK\n"
        "        decimal price\n"
        "        integer id_ref PK, FK\n"
        "    }\n"
        "    lonely {\n"
        "        pickletype payload\n"
        "    }\n"
        "    parents {\n"
        "        uuid id PK\n"
        "    }\n"
        '    children }o--|| children : "id_ref"\n'
        '    children }o--o| parents : "other_id"\n'
        '    children }o--|| parents : "parent_id"\n'
    )


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess[str]]:
    """The console script, each run at once, from the repository root; DATABASE_URL set to nonsense it must not read."""
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_URL",) and not k.startswith("DBCORE_TEST_")}
    env["DATABASE_URL"] = "oracle://nobody@nowhere/none"
    procs = {
        name: subprocess.Popen(
            [str(DBCORE), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, args in RUNS.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        results[name] = subprocess.CompletedProcess([str(DBCORE), *RUNS[name]], proc.returncode, out, err)
    return results


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args} -> {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_models_of_a_downstream_project(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = runs["downstream"]
    assert result.returncode == 0, explain(result)
    lines = result.stdout.splitlines()
    assert "    notes {" in lines, explain(result)
    assert '    notes }o--|| agents : "agent_id"' in lines, explain(result)
    assert "    agents {" in lines  # dbcore's tables are drawn as well
    assert result.stderr == ""


def test_a_module_that_cannot_be_imported(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = runs["missing module"]
    assert result.returncode == 2, explain(result)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, explain(result)
    assert lines[0].startswith("dbcore: --models no_such_module_xyz: cannot import it: ModuleNotFoundError"), lines
    assert "Traceback" not in result.stderr


def test_a_format_is_required(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = runs["no format"]
    assert result.returncode == 2, explain(result)
    assert "--mermaid" in result.stderr and "usage: dbcore schema" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
