"""Type checkers see the reference mixins that ``ref_mixins()`` builds at run time.

Each model module declares the generated mixins, and the backrefs they add,
under ``if TYPE_CHECKING:`` (docs/models.md). These tests keep those
declarations equal to what runs, and run mypy on a downstream model file to see
what it infers.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy.orm import declared_attr

import dbcore
from dbcore.base import Base
from dbcore.refs import ref_names

ROOT = Path(__file__).resolve().parents[1]
DOWNSTREAM = ROOT / "tests" / "typing_downstream" / "models.py"
MODEL_MODULES = ("dbcore.DB_Auth", "dbcore.DB_Agents", "dbcore.DB_Entities", "dbcore.DB_Memories")


# --- reading the declarations ----------------------------------------------------


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_checking_annotations(body: list[ast.stmt]) -> dict[str, ast.expr]:
    """``name: annotation`` statements inside ``if TYPE_CHECKING:`` blocks of a class body."""
    found: dict[str, ast.expr] = {}
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    found[statement.target.id] = statement.annotation
    return found


def _all_annotated(body: list[ast.stmt]) -> set[str]:
    """Every name a class body annotates, inside ``if TYPE_CHECKING:`` or not."""
    names = {n.target.id for n in body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return names | set(_type_checking_annotations(body))


@dataclass
class Generated:
    """One name bound by ``A, B = ref_mixins(Model, role=...)`` in the ``else:`` of a TYPE_CHECKING block."""

    name: str
    model: str
    role: str | None
    optional: bool
    line: int
    call: ast.Call


@dataclass
class ModuleDeclarations:
    module: ModuleType
    generated: dict[str, Generated]
    declared: dict[str, ast.ClassDef]  # the TYPE_CHECKING stand-ins of generated mixins
    classes: dict[str, ast.ClassDef]  # every other top-level class
    problems: list[str]


def _ref_mixins_call(node: ast.AST) -> ast.Call | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ref_mixins":
        return node
    return None


def read_declarations(module: ModuleType, source: str | None = None) -> ModuleDeclarations:
    """The generated mixins of ``module``'s source (or of ``source``) and their TYPE_CHECKING stand-ins."""
    path = Path(str(module.__file__))
    if source is None:
        source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    where = path.name
    result = ModuleDeclarations(module, {}, {}, {}, [])
    accounted: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            result.classes[node.name] = node
        if not (isinstance(node, ast.If) and _is_type_checking(node)):
            continue
        calls = [
            statement
            for statement in node.orelse
            if isinstance(statement, ast.Assign) and _ref_mixins_call(statement.value)
        ]
        if not calls:
            continue
        for statement in calls:
            call = _ref_mixins_call(statement.value)
            assert call is not None
            accounted.add(id(call))
            target = statement.targets[0]
            if not (isinstance(target, ast.Tuple) and len(target.elts) == 2 and isinstance(call.args[0], ast.Name)):
                result.problems.append(f"{where}:{statement.lineno}: write `A, B = ref_mixins(Model, role=...)`")
                continue
            roles = [*call.args[1:2], *(k.value for k in call.keywords if k.arg == "role")]
            role = roles[0].value if roles and isinstance(roles[0], ast.Constant) else None
            assert role is None or isinstance(role, str), ast.unparse(call)
            for index, element in enumerate(target.elts):
                if isinstance(element, ast.Name) and element.id != "_":
                    result.generated[element.id] = Generated(
                        element.id, call.args[0].id, role, index == 1, statement.lineno, call
                    )
        for declared in node.body:
            if isinstance(declared, ast.ClassDef):
                result.declared[declared.name] = declared
            else:
                result.problems.append(
                    f"{where}:{declared.lineno}: only mixin classes belong in this TYPE_CHECKING block"
                )
    for anywhere in ast.walk(tree):
        call = _ref_mixins_call(anywhere)
        if call is not None and id(call) not in accounted:
            result.problems.append(
                f"{where}:{call.lineno}: ref_mixins() outside the `else:` of an `if TYPE_CHECKING:` "
                "that declares its classes"
            )
    for name in sorted(result.generated.keys() - result.declared.keys()):
        line = result.generated[name].line
        result.problems.append(f"{where}:{line}: {name} is generated but not declared under TYPE_CHECKING")
    for name in sorted(result.declared.keys() - result.generated.keys()):
        line = result.declared[name].lineno
        result.problems.append(f"{where}:{line}: {name} is declared under TYPE_CHECKING but not generated")
    return result


# --- comparing them with what runs ---------------------------------------------


def _shape(annotation: ast.expr) -> tuple[str, str] | None:
    """``Mapped[list[X]]`` -> ("list", "X"), ``Mapped[X | None]`` -> ("optional", "X"), ``Mapped[X]`` -> ("one", "X")."""
    if not (isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Mapped"):
        return None
    inner = annotation.slice
    if isinstance(inner, ast.Subscript) and ast.unparse(inner.value) == "list":
        return "list", ast.unparse(inner.slice)
    if isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.BitOr) and ast.unparse(inner.right) == "None":
        return "optional", ast.unparse(inner.left)
    if isinstance(inner, ast.Subscript) and ast.unparse(inner.value) in ("Optional", "typing.Optional"):
        return "optional", ast.unparse(inner.slice)
    return "one", ast.unparse(inner)


def _names(module: ModuleType, dotted: str, expected: type) -> bool:
    """Whether ``dotted``, as written in ``module``, names ``expected``.

    Names only imported under TYPE_CHECKING do not exist at run time; then the class name must match.
    """
    value: Any = vars(module)
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return dotted.rsplit(".", 1)[-1] == expected.__name__
    return value is expected


def check_mixins(found: ModuleDeclarations) -> list[str]:
    """Each declared stand-in has exactly the names and types of the class ref_mixins() returns."""
    module, problems = found.module, []
    for name, generated in sorted(found.generated.items()):
        declared = found.declared.get(name)
        if declared is None:
            continue  # already reported
        where = f"{Path(str(module.__file__)).name}:{declared.lineno}: {name}"
        model = vars(module)[generated.model]
        real = vars(module)[name]
        # The call as written, in the module's namespace: ref_mixins() caches by its arguments' form.
        call = compile(ast.Expression(generated.call), str(module.__file__), "eval")
        if real is not eval(call, vars(module))[generated.optional]:
            problems.append(f"{where} is not what {ast.unparse(generated.call)} returns")
            continue
        column, attribute, _ = ref_names(model, "-", generated.role)
        built = {key: value for key, value in vars(real).items() if isinstance(value, declared_attr)}
        if set(built) != {column, attribute}:
            problems.append(f"{where}: ref_mixins() builds {sorted(built)}, ref_names() says {[column, attribute]}")
            continue
        nullable = built[column].fget(real).column.nullable
        if nullable != generated.optional:
            problems.append(f"{where}: {column} nullable={nullable} at run time")
        kind = "optional" if generated.optional else "one"
        expected = {column: (kind, uuid.UUID), attribute: (kind, model)}
        annotations = {
            statement.target.id: statement.annotation
            for statement in declared.body
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
        }
        extra = [s for s in declared.body if not isinstance(s, ast.AnnAssign) and not _is_docstring(s)]
        if extra or set(annotations) != set(expected):
            problems.append(
                f"{where} declares {sorted(annotations)}{' and more' if extra else ''}; "
                f"ref_mixins() generates {sorted(expected)}"
            )
            continue
        for key, (want_kind, want_type) in expected.items():
            shape = _shape(annotations[key])
            if shape is None or shape[0] != want_kind or not _names(module, shape[1], want_type):
                wanted = f"{want_type.__module__}.{want_type.__qualname__}" if key == column else generated.model
                wanted = f"Mapped[{wanted}{' | None' if want_kind == 'optional' else ''}]"
                problems.append(f"{where}.{key} is declared {ast.unparse(annotations[key])}, should be {wanted}")
    return problems


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def check_reverse(found: ModuleDeclarations, known: list[ModuleDeclarations]) -> list[str]:
    """Every relationship of the module's models is visible to type checkers, and declared backrefs are real.

    Relationships to models outside ``known`` (a test's or a downstream project's
    backrefs onto these models) are not the module's business and are left out.
    """
    module, problems = found.module, []
    known_modules = {k.module.__name__ for k in known}
    stand_ins = {
        vars(k.module)[name]: _all_annotated(node.body)
        for k in known
        for name, node in k.declared.items()
        if name in vars(k.module)
    }
    for class_name, node in sorted(found.classes.items()):
        cls = vars(module).get(class_name)
        mapper = getattr(cls, "__mapper__", None)
        if not isinstance(cls, type) or mapper is None or cls.__module__ != module.__name__:
            continue
        where = f"{Path(str(module.__file__)).name}:{node.lineno}: {class_name}"
        visible = _all_annotated(node.body)
        for base in cls.__mro__[1:]:
            if base in stand_ins:
                visible |= stand_ins[base]
            else:
                visible |= set(vars(base)) | set(vars(base).get("__annotations__", {}))
        relationships = mapper.relationships
        for key, prop in relationships.items():
            if prop.mapper.class_.__module__ in known_modules and key not in visible:
                problems.append(f"{where}.{key} exists at run time but type checkers cannot see it")
        for key, annotation in _type_checking_annotations(node.body).items():
            prop = relationships.get(key)
            if prop is None:
                problems.append(f"{where}.{key} is declared under TYPE_CHECKING but is no relationship at run time")
                continue
            target = prop.mapper.class_
            if prop.uselist:
                want = ("list", f"Mapped[list[{target.__name__}]]")
            elif any(column.nullable for column in prop.local_columns):
                want = ("optional", f"Mapped[{target.__name__} | None]")
            else:
                want = ("one", f"Mapped[{target.__name__}]")
            shape = _shape(annotation)
            if shape is None or shape[0] != want[0] or not _names(module, shape[1], target):
                problems.append(f"{where}.{key} is declared {ast.unparse(annotation)}, should be {want[1]}")
    return problems


def drift(checked: list[ModuleType], known: list[ModuleType], sources: dict[str, str] | None = None) -> list[str]:
    """Every mismatch between the TYPE_CHECKING declarations of ``checked`` and the run-time models.

    ``known`` also lends its declarations (mixins and models from other modules);
    ``sources`` replaces a module's source text, by module name.
    """
    Base.registry.configure(cascade=True)
    sources = sources or {}
    declarations = {module.__name__: read_declarations(module, sources.get(module.__name__)) for module in known}
    problems: list[str] = []
    for module in checked:
        found = declarations[module.__name__]
        problems += found.problems
        problems += check_mixins(found)
        problems += check_reverse(found, list(declarations.values()))
    return problems


# --- tests ----------------------------------------------------------------------


def test_every_model_module_is_checked() -> None:
    package = Path(dbcore.__file__).parent
    assert sorted(f"dbcore.{path.stem}" for path in package.glob("DB_*.py")) == sorted(MODEL_MODULES)


def _model_modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in MODEL_MODULES]


def test_every_generated_mixin_is_declared() -> None:
    for module in _model_modules():
        generated = {
            name
            for name, value in vars(module).items()
            if isinstance(value, type) and name.endswith("RefMixin") and value.__module__ == module.__name__
        }
        assert generated, module.__name__
        assert set(read_declarations(module).declared) == generated, module.__name__


def test_model_declarations_match_generated_mixins() -> None:
    modules = _model_modules()
    assert drift(modules, modules) == []


def test_drift_is_reported() -> None:
    modules = _model_modules()
    auth = importlib.import_module("dbcore.DB_Auth")
    source = Path(str(auth.__file__)).read_text(encoding="utf-8")
    edits = {
        "        owner: Mapped[User | None]\n": "        owner: Mapped[User]\n",
        "        grantee_id: Mapped[uuid.UUID]\n": "        grantee_ref: Mapped[uuid.UUID]\n",
        "        mfa_methods: Mapped[list[MFAMethod]]\n": "",
        "        entity: Mapped[Entity | None]\n": "        entity: Mapped[list[Entity]]\n        nickname: Mapped[str]\n",
        "    class MFAMethodRefMixin:\n": "    class MFAMethodRefMixn:\n",
    }
    for old, new in edits.items():
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    source += 'ExtraUserRefMixin, _ = ref_mixins(User, role="extra")\n'
    problems = drift([auth], modules, {auth.__name__: source})
    expected = [
        "OptionalOwnerUserRefMixin.owner is declared Mapped[User], should be Mapped[User | None]",
        "GranteeUserRefMixin declares ['grantee', 'grantee_ref']; ref_mixins() generates ['grantee', 'grantee_id']",
        "User.mfa_methods exists at run time but type checkers cannot see it",
        "User.entity is declared Mapped[list[Entity]], should be Mapped[Entity | None]",
        "User.nickname is declared under TYPE_CHECKING but is no relationship at run time",
        "MFAMethodRefMixin is generated but not declared under TYPE_CHECKING",
        "MFAMethodRefMixn is declared under TYPE_CHECKING but not generated",
        "ref_mixins() outside the `else:` of an `if TYPE_CHECKING:`",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for message in expected:
        assert any(message in problem for problem in problems), (message, problems)


_DOWNSTREAM_DRIFT = f"""
import importlib.util, json, sys
from tests.test_typing import MODEL_MODULES, drift
spec = importlib.util.spec_from_file_location("typing_downstream_models", {str(DOWNSTREAM)!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
models = [importlib.import_module(name) for name in MODEL_MODULES]
print(json.dumps(drift([module], [*models, module])))
"""


def _subprocess_env() -> dict[str, str]:
    """This process's environment, with the dbcore it imported first on the path."""
    env = dict(os.environ)
    source = str(Path(dbcore.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    return env


def test_downstream_declarations_match_generated_mixins() -> None:
    # Its own interpreter: the downstream tables must not join this session's dbcore.Base.metadata.
    result = subprocess.run(
        [sys.executable, "-c", _DOWNSTREAM_DRIFT], cwd=ROOT, env=_subprocess_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.fixture(scope="module")
def mypy_downstream() -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--warn-unused-ignores"]
    return subprocess.run(
        [*command, str(DOWNSTREAM.relative_to(ROOT))], cwd=ROOT, env=_subprocess_env(), capture_output=True, text=True
    )


def _normalized(revealed: str) -> str:
    revealed = revealed.replace("builtins.", "")
    revealed = re.sub(r"(?<![\w.])(?:tests\.typing_downstream\.)?models\.", "downstream.", revealed)
    return re.sub(r"(?:Union\[(.+), None\]|Optional\[(.+)\])", lambda m: f"{m.group(1) or m.group(2)} | None", revealed)


def revealed_types(output: str) -> dict[str, str]:
    """``{expression: revealed type}`` for the reveal_type() lines of the downstream file."""
    lines = DOWNSTREAM.read_text(encoding="utf-8").splitlines()
    found = {}
    for match in re.finditer(r"^.*?models\.py:(\d+): note: Revealed type is \"(.+)\"$", output, re.M):
        call = re.search(r"reveal_type\((.+)\)", lines[int(match.group(1)) - 1])
        assert call, match.group(0)
        found[call.group(1)] = _normalized(match.group(2))
    return found


def test_mypy_passes_on_downstream_models(mypy_downstream: subprocess.CompletedProcess[str]) -> None:
    assert mypy_downstream.returncode == 0, mypy_downstream.stdout + mypy_downstream.stderr
    assert " error:" not in mypy_downstream.stdout


def test_mypy_sees_generated_mixins_as_classes(mypy_downstream: subprocess.CompletedProcess[str]) -> None:
    assert revealed_types(mypy_downstream.stdout) == {
        "Memory.agent": "sqlalchemy.orm.attributes.InstrumentedAttribute[dbcore.DB_Agents.Agent]",
        "memory.agent": "dbcore.DB_Agents.Agent",
        "memory.agent_id": "uuid.UUID",
        "memory.world": "dbcore.DB_Entities.World | None",
        "agent.memories": "list[dbcore.DB_Memories.Memory]",
        "agent.owner": "dbcore.DB_Auth.User | None",
        "Note.author": "sqlalchemy.orm.attributes.InstrumentedAttribute[downstream.Person]",
        "note.author": "downstream.Person",
        "note.author_id": "uuid.UUID",
        "note.agent": "dbcore.DB_Agents.Agent | None",
        "note.agent_id": "uuid.UUID | None",
        "person.notes_as_author": "list[downstream.Note]",
    }
