"""Developer sessions: ``nox -s tests-sqlite``, ``nox -s lint``, ``nox -s typecheck``."""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
DIALECTS = ["sqlite", "postgresql", "mariadb", "mssql"]


@nox.session
@nox.parametrize("dialect", DIALECTS)
def tests(session: nox.Session, dialect: str) -> None:
    """Run the suite against one dialect (its marker), e.g. ``nox -s "tests(dialect='mariadb')"``."""
    session.install("-e", ".[all,dev]")
    session.run("pytest", "-m", f"{dialect} or compile_only or not (sqlite or postgresql or mariadb or mssql)", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "examples")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[all,dev]")
    session.run("mypy", "src/dbcore")
