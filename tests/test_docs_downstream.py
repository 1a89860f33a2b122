"""docs/models.md and docs/migrations.md, followed literally by a new downstream project.

The docs' fenced blocks carry what to do: ``python title="myapp/models.py"`` (and
``ini title="..."``) blocks are written to that path of a fresh project folder, and
each line of a ``sh {.project}`` block is run there, in document order. dbcore is
installed into a virtual environment of its own, once as a regular install (a
wheel built from this checkout) and once editable (``pip install -e``), as a user
would; its dependencies come from the test environment. Every step must exit 0
without a traceback, and the project's own tests, the last step, must pass, on
every live dialect.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
import textwrap
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

import dbcore

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "docs" / "models.md", REPO / "docs" / "migrations.md")
# A block titled with a path is a file to write: ```python title="myapp/models.py"
TITLE = re.compile(r'\btitle="(?P<path>[^"]+)"')
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)


@dataclass(frozen=True)
class Step:
    """One thing the docs tell the user to do: write ``path`` with ``text``, or run ``command``."""

    doc: str
    path: str | None = None
    text: str = ""
    command: tuple[str, ...] = ()


def doc_steps() -> list[Step]:
    steps: list[Step] = []
    for doc in DOCS:
        for block in FENCE.finditer(doc.read_text(encoding="utf-8")):
            body = textwrap.dedent(block["body"])
            title = TITLE.search(block["info"])
            if title is not None:
                steps.append(Step(doc.name, path=title["path"], text=body))
            elif block["lang"] == "sh" and ".project" in block["info"]:
                for line in body.splitlines():
                    if line.strip() and not line.lstrip().startswith("#"):
                        steps.append(Step(doc.name, command=tuple(shlex.split(line))))
    return steps


def test_the_docs_hold_a_whole_project() -> None:
    steps = doc_steps()
    files = [step.path for step in steps if step.path]
    commands = [step.command[:2] for step in steps if step.command]
    assert files == ["myapp/models.py", "alembic.ini", "tests/test_notes.py"]
    assert ("dbcore", "init") in commands and ("alembic", "revision") in commands
    assert commands[-1] == ("python", "-m"), "the project's tests are the last step"


def _purelib(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def install_into(root: Path, *, editable: bool) -> Path:
    """A virtual environment at ``root`` with dbcore installed from this checkout; returns its ``bin`` folder.

    As ``pip install dbcore`` (or ``pip install -e``) would make it, except that dbcore's
    dependencies come from the test environment (the machine may have no network).
    """
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    # dbcore's dependencies (and hatchling, to build it) from the test environment: a plain
    # path, so that environment's own dbcore (its .pth files) stays out of sight.
    (_purelib(python) / "_dbcore_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
        + ["--no-build-isolation", "--ignore-installed", *(["-e"] if editable else []), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "bin"


@pytest.fixture(scope="module", params=["regular", "editable"])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with dbcore installed from this checkout; returns its ``bin`` folder."""
    kind = str(request.param)
    root = tmp_path_factory.mktemp(f"venv-{kind}")
    python = install_into(root, editable=kind == "editable") / "python"
    # The console script alembic's own install would make (dbcore depends on alembic).
    launcher = root / "bin" / "alembic"
    launcher.write_text(f"#!{python}\nimport sys\nfrom alembic.config import main\nsys.exit(main())\n")
    launcher.chmod(0o755)

    where = subprocess.run(
        [str(python), "-c", "import dbcore, dbcore.migrate as m; print(dbcore.__file__); print(m.migrations_dir())"],
        capture_output=True,
        text=True,
        cwd=root,
        env=_clean_env(root / "bin"),
    )
    assert where.returncode == 0, where.stderr
    package, migrations = (Path(line) for line in where.stdout.split())
    expected = REPO / "src" / "dbcore" if kind == "editable" else _purelib(python) / "dbcore"
    assert package.parent == expected, f"{kind} install imports dbcore from {package}"
    assert (migrations / "versions" / "0001_initial_schema.py").is_file()
    return root / "bin"


def _clean_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "DATABASE_URL", "POSTGRES_URL", "VIRTUAL_ENV")
        and not name.startswith(("DBCORE_", "PYTEST_"))
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _run(step: Step, project: Path, env: dict[str, str]) -> str:
    result = subprocess.run(list(step.command), cwd=project, env=env, capture_output=True, text=True, timeout=300)
    shown = f"{step.doc}: {shlex.join(step.command)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    return result.stdout


def test_the_downstream_project_of_the_docs(installed: Path, settings: dbcore.Settings, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = _clean_env(installed, DATABASE_URL=settings.url.render_as_string(hide_password=False))
    outputs: dict[tuple[str, ...], str] = {}
    for step in doc_steps():
        if step.path is not None:
            target = project / step.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.text, encoding="utf-8")
        else:
            outputs[step.command[:2]] = _run(step, project, env)

    # What the docs promise of the one command: both branches, both seed lists, the key.
    revision = next((project / "migrations" / "versions").glob("*_myapp_tables.py"))
    script = revision.read_text()
    assert "= ('myapp',)" in script and "depends_on: str | Sequence[str] | None = '0003'" in script, script
    assert script.count("import dbcore.types") == 1, script
    init = outputs[("dbcore", "init")]
    # The project's revision depends on dbcore's head, so alembic records it alone.
    assert (
        f"schema: revision {revision.name.split('_')[0]}, with dbcore at 0003 (migrated from revision 0003)" in init
    ), init
    assert "tables: 23" in init and "recorded vector space 'memories'" in init and "dbk_" in init, init
    assert "1 passed" in outputs[("python", "-m")]

    again = _run(Step("again", command=("dbcore", "init", "--alembic-ini", "alembic.ini")), project, env)
    assert "(already current)" in again and "seed rows: 0 inserted, 0 updated" in again, again
    seeded = _run(Step("seed", command=("dbcore", "seed", "--alembic-ini", "alembic.ini")), project, env)
    assert "people: 0 inserted, 0 updated, 1 unchanged" in seeded, seeded
    doctor = _run(Step("doctor", command=("dbcore", "doctor", "--alembic-ini", "alembic.ini")), project, env)
    assert "none pending" in doctor and doctor.strip().endswith("healthy"), doctor
    check = _run(Step("check", command=("alembic", "check")), project, env)
    assert "No new upgrade operations detected" in check, check
