"""The public API is ``taskforge.__all__``: sorted, complete, importable, documented."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import taskforge

INIT = Path(taskforge.__file__)


def imported_public_names() -> set[str]:
    """Every public name that ``taskforge/__init__.py`` imports (or binds) at module level."""
    tree = ast.parse(INIT.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


def test_all_is_sorted() -> None:
    assert list(taskforge.__all__) == sorted(taskforge.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(taskforge.__all__)) == len(taskforge.__all__)


def test_every_public_import_is_exported() -> None:
    missing = imported_public_names() - set(taskforge.__all__)

    assert not missing, f"imported in taskforge/__init__.py but not in __all__: {sorted(missing)}"


def test_every_exported_name_exists() -> None:
    absent = [name for name in taskforge.__all__ if not hasattr(taskforge, name)]

    assert not absent


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}

    exec("from taskforge import *", namespace)

    assert set(namespace) - {"__builtins__"} == set(taskforge.__all__)


def test_every_exported_class_and_function_has_a_docstring() -> None:
    undocumented = [
        name
        for name in taskforge.__all__
        if (inspect.isclass(obj := getattr(taskforge, name)) or inspect.isfunction(obj))
        and not inspect.getdoc(obj)
    ]

    assert not undocumented


def test_core_names_are_public() -> None:
    core = {
        "task", "Taskforge", "Settings", "Worker", "Retry", "JobHandle", "JobStatus",
        "JobPriority", "JobQueue", "JobWorker", "current_job", "TaskforgeError",
        "ConfigurationError", "EnqueueError", "SerializationError", "PayloadTooLargeError",
        "BrokerConnectionError", "JobFailedError", "ResultTimeoutError",
    }  # fmt: skip

    assert core <= set(taskforge.__all__)


def test_errors_share_one_base() -> None:
    errors = [
        obj
        for name in taskforge.__all__
        if inspect.isclass(obj := getattr(taskforge, name))
        and issubclass(obj, Exception)
        and name.endswith("Error")
    ]

    assert errors
    assert all(issubclass(e, taskforge.TaskforgeError) for e in errors)
