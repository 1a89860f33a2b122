"""SQL Server DDL of the toolkit models, compiled without a server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateIndex, CreateTable

# The model set of test_toolkit_models, loaded as its own module (its own registry).
_spec = importlib.util.spec_from_file_location(
    "toolkit_models_for_mssql", Path(__file__).with_name("test_toolkit_models.py")
)
assert _spec is not None and _spec.loader is not None
_models = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = _models  # declarative resolves annotations through sys.modules
    _spec.loader.exec_module(_models)
ToolkitBase = _models.ToolkitBase

pytestmark = pytest.mark.compile_only

DIALECT = mssql.dialect()


def ddl(table_name: str) -> str:
    table = ToolkitBase.metadata.tables[table_name]
    return str(CreateTable(table).compile(dialect=DIALECT))


def test_keys_are_uniqueidentifier() -> None:
    notes = ddl("notes")
    assert "id UNIQUEIDENTIFIER NOT NULL" in notes
    assert "person_id UNIQUEIDENTIFIER NOT NULL" in notes
    assert "CONSTRAINT pk_notes PRIMARY KEY (id)" in notes
    assert "CONSTRAINT fk_notes_person_id_people FOREIGN KEY(person_id) REFERENCES people (id)" in notes
    reviews = ddl("reviews")
    assert "author_id UNIQUEIDENTIFIER NOT NULL" in reviews
    assert "reviewer_id UNIQUEIDENTIFIER NULL" in reviews
    assert "FOREIGN KEY(reviewer_id) REFERENCES people (id)" in reviews
    folders = ddl("folders")
    assert "parent_id UNIQUEIDENTIFIER NULL" in folders
    assert "FOREIGN KEY(parent_id) REFERENCES folders (id)" in folders


def test_audit_columns_are_datetime2_and_last() -> None:
    notes = ddl("notes")
    assert "created_at DATETIME2(6) NOT NULL" in notes
    assert notes.index("body") < notes.index("created_at") < notes.index("updated_at") < notes.index("deleted_at")


def test_every_foreign_key_has_index_ddl() -> None:
    rendered = {
        str(CreateIndex(index).compile(dialect=DIALECT))
        for table in ToolkitBase.metadata.sorted_tables
        for index in table.indexes
    }
    for table, column in [
        ("notes", "person_id"),
        ("entities", "person_id"),
        ("reviews", "author_id"),
        ("reviews", "reviewer_id"),
        ("folders", "parent_id"),
        ("members", "team_id"),
    ]:
        assert f"CREATE INDEX ix_{table}_{column} ON {table} ({column})" in rendered
