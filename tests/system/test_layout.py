"""The suite's own layout: no test imports ``benchmarks`` (the benchmark scripts build on
``tests.support``, never the reverse), and every folder of tests is a package."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: A worker's app given by dotted path, as subprocesses are started: ``"pkg.module:app"``.
APP_PATH = re.compile(r"^([\w.]+):\w+$")


def imported_modules(path: Path) -> Iterator[str]:
    """Every module ``path`` imports: import statements, ``import_module("…")``, and the
    ``"module:app"`` strings handed to worker subprocesses."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                yield node.args[0].value
        elif isinstance(node, ast.Constant) and (match := APP_PATH.match(str(node.value))):
            yield match.group(1)


def benchmark_imports(path: Path) -> list[str]:
    return [m for m in imported_modules(path) if m == "benchmarks" or m.startswith("benchmarks.")]


def test_no_file_under_tests_imports_benchmarks() -> None:
    offenders = {
        str(path.relative_to(TESTS.parent)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := benchmark_imports(path))
    }

    assert offenders == {}


def test_the_check_sees_each_way_of_importing(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import benchmarks.bench\n"
        "from benchmarks import chaos\n"
        "importlib.import_module('benchmarks.runner')\n"
        "cmd = ['taskforge', 'worker', 'benchmarks.chaos_tasks:app']\n"
        "from tests.support import chaos as fine\n"
    )

    assert sorted(benchmark_imports(sample)) == [
        "benchmarks", "benchmarks.bench", "benchmarks.chaos_tasks", "benchmarks.runner",
    ]  # fmt: skip


def test_every_folder_of_tests_is_a_package() -> None:
    folders = {p.parent for p in TESTS.rglob("*.py")} - {TESTS}

    assert sorted(str(f) for f in folders if not (f / "__init__.py").exists()) == []
