"""The code stays clean and its architecture holds, as configured in pyproject.toml, run as part
of the test command that CI and a newcomer run: ruff (pyflakes, pycodestyle, bugbear, and
complexity at 15), mypy (untyped functions checked too), import-linter's contracts (packages
point down), and two rules of the house: no module reaches into another's private attributes,
and an import inside a function is there for start-up cost (or an optional library), and says so."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT = Path(ROOT) / "agent"


def tool(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        if os.environ.get("LLM_AGENT_REQUIRE_PEERS") == "1":
            pytest.fail(f"{name} is not installed (scripts/bootstrap --test installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def test_ruff_is_clean():
    r = subprocess.run([tool("ruff"), "check", "agent", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_is_clean():
    r = subprocess.run([tool("mypy"), "agent"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_architectures_contracts_hold():
    r = subprocess.run([tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "0 broken" in r.stdout, r.stdout + r.stderr


def modules():
    for path in sorted(AGENT.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


# attributes whose leading underscore is part of a public API, not a privacy mark
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_exit", "_current_frames"}  # namedtuple's; os._exit; sys._current_frames


def test_no_module_reaches_into_another_objects_private_attributes():
    found = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in PUBLIC_UNDERSCORED
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_an_import_inside_a_function_says_why():
    """Never to dodge an import circle (the contracts above forbid them): for start-up cost,
    memory cost (a module an agent without the feature never loads), or an optional library,
    with a comment saying so on its line."""
    unexplained = []
    for path, tree in modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    line = lines[node.lineno - 1]
                    if not any(why in line for why in ("start-up cost", "memory cost", "optional")):
                        unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}: {line.strip()}")
    assert unexplained == []
