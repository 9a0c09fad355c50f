"""Imports point down: each layer of the package imports only the layers below it.

The layers, bottom up: the shared bottom (errors, settings, job), the Redis layer
(``taskforge.driver``), the queue protocol (``taskforge.protocol``), and everything built on them.
The guide's services (the cache, the pub/sub client, the health report) stand on the Redis layer
and never pull in the worker; the cache and the pub/sub client not the queue protocol either.
Only module-level imports count (an import inside a function runs when it is called).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "taskforge"

BOTTOM = ("taskforge.errors", "taskforge.settings", "taskforge.job")

#: module prefix -> the taskforge modules it may import at module level (prefixes)
ALLOWED: dict[str, tuple[str, ...]] = {
    "taskforge.driver": ("taskforge.driver", "taskforge.errors", "taskforge.settings"),
    "taskforge.protocol": ("taskforge.protocol", "taskforge.driver", *BOTTOM),
    "taskforge.cache": ("taskforge.cache", "taskforge.driver", *BOTTOM),
    "taskforge.pubsub": ("taskforge.driver", *BOTTOM),
    "taskforge.health": ("taskforge.driver", "taskforge.protocol", *BOTTOM),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _top_level_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of each taskforge import at module level (not under TYPE_CHECKING)."""
    found: list[tuple[int, str]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "taskforge":
                    found.extend((node.lineno, f"taskforge.{a.name}") for a in node.names)
                elif node.module.startswith("taskforge."):
                    found.append((node.lineno, node.module))
            elif isinstance(node, ast.Import):
                found.extend(
                    (node.lineno, a.name) for a in node.names if a.name.startswith("taskforge")
                )
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return found


def _governed(module: str) -> str | None:
    for prefix in ALLOWED:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None


MODULES = sorted(
    (m, p) for p in PACKAGE.rglob("*.py") if _governed(m := _module_name(p)) is not None
)


def test_every_layer_has_modules() -> None:
    assert {_governed(m) for m, _ in MODULES} == set(ALLOWED)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_down(module: str, path: Path) -> None:
    allowed = ALLOWED[_governed(module) or ""]
    upward = [
        f"line {line}: {target}"
        for line, target in _top_level_imports(path)
        if not any(target == ok or target.startswith(ok + ".") for ok in allowed)
    ]
    assert not upward, f"{module} imports above its layer: {upward}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from taskforge.worker import Worker\nif True:\n    import taskforge.cli\n")
    assert [t for _, t in _top_level_imports(bad)] == ["taskforge.worker", "taskforge.cli"]
