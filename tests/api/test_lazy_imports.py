"""A plain worker or producer imports only what it uses: the package's optional names (the admin
API, the cache, dead letters, the test bed, ...) load on first use, and still import and type."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import taskforge

#: Modules a process that sends jobs, or runs a plain worker, never needs.
OPTIONAL = ("taskforge.admin", "taskforge.cache", "taskforge.deadletters", "taskforge.guide_queue",
            "taskforge.pubsub", "taskforge.testing", "taskforge.health",
            "taskforge.protocol.inspection")  # fmt: skip


def loaded_after(code: str) -> set[str]:
    """The taskforge modules a fresh interpreter has loaded after running ``code``."""
    probe = (
        f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules if m.startswith('taskforge')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    ["import taskforge", "import taskforge\nfrom taskforge import Worker, Taskforge, Settings"],
)
def test_a_producer_or_a_plain_worker_loads_no_optional_module(code: str) -> None:
    loaded = loaded_after(code)

    assert "taskforge" in loaded
    assert loaded.isdisjoint(OPTIONAL), sorted(loaded.intersection(OPTIONAL))


def test_a_producer_does_not_load_the_worker() -> None:
    assert "taskforge.worker" not in loaded_after("import taskforge")


def test_every_lazy_name_is_public_and_declared_for_type_checkers() -> None:
    tree = ast.parse(Path(taskforge.__file__).read_text())
    checked = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    lazy = set(taskforge._LAZY)

    assert lazy <= set(taskforge.__all__)
    assert checked == lazy


def test_a_lazy_name_imports_and_an_unknown_one_raises() -> None:
    from taskforge import Admin, cached

    assert Admin is taskforge.Admin and callable(cached)
    assert "DeadFilter" in dir(taskforge)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        taskforge.Nope  # type: ignore[attr-defined]  # noqa: B018
