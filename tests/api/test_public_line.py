"""The public line: every module says what it exports (``__all__``), and what it says exists.

``taskforge.__all__`` is the API (see test_public_api.py); each module's ``__all__`` is what other
modules and users may import from it. A module whose name starts with ``_`` is private and needs
none. The README's ``from taskforge... import ...`` lines must import.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

import taskforge

README = Path(__file__).resolve().parents[2] / "README.md"

#: Modules that need an extra's packages to import, and those packages.
EXTRAS = {"taskforge.dashboard": ("starlette", "jinja2", "uvicorn")}


def _extra_missing(name: str) -> bool:
    for prefix, needs in EXTRAS.items():
        if name == prefix or name.startswith(prefix + "."):
            return any(importlib.util.find_spec(dep) is None for dep in needs)
    return False


def public_module_names() -> list[str]:
    """Every module and package under taskforge/, private ones (``_name``) left out."""
    names = ["taskforge"]
    for info in pkgutil.walk_packages(taskforge.__path__, "taskforge.", onerror=lambda _: None):
        parts = info.name.split(".")[1:]
        if any(part.startswith("_") for part in parts) or _extra_missing(info.name):
            continue
        names.append(info.name)
    return sorted(names)


MODULES = public_module_names()


def declared(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module.__name__} declares no __all__"
    return list(names)


def test_the_walk_finds_the_package_and_its_subpackages() -> None:
    assert {"taskforge", "taskforge.app", "taskforge.errors", "taskforge.cron.schedule"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_all(name: str) -> None:
    module = importlib.import_module(name)

    names = getattr(module, "__all__", None)

    assert names is not None, f"{name} has no __all__: list its public names, or rename it _{name}"
    assert all(isinstance(n, str) for n in names)
    assert len(set(names)) == len(names), f"{name}.__all__ repeats a name"


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    if not hasattr(module, "__all__"):
        pytest.skip(f"{name} has no __all__ (test_module_declares_all fails for it)")

    absent = [n for n in declared(module) if not hasattr(module, n)]

    assert not absent, f"{name}.__all__ names what it does not have: {absent}"


def test_every_top_level_name_resolves() -> None:
    absent = [n for n in taskforge.__all__ if getattr(taskforge, n, None) is None]

    assert not absent


def test_exceptions_are_defined_in_errors() -> None:
    moved = ["SerializerRefusedError", "SignatureError", "JobTimeoutError", "ArgumentsError"]
    errors = importlib.import_module("taskforge.errors")

    homes = {n: getattr(errors, n).__module__ for n in moved}

    assert homes == dict.fromkeys(moved, "taskforge.errors")


def test_exceptions_still_import_from_their_old_modules() -> None:
    from taskforge.errors import (
        ArgumentsError,
        Fail,
        JobTimeoutError,
        Retry,
        SerializerRefusedError,
        SignatureError,
    )
    from taskforge.payload import ArgumentsError as FromPayload
    from taskforge.retry import Fail as FromRetryFail
    from taskforge.retry import Retry as FromRetry
    from taskforge.serializer import SerializerRefusedError as FromSerializer
    from taskforge.signing import SignatureError as FromSigning
    from taskforge.worker.executor import JobTimeoutError as FromExecutor

    pairs = [
        (FromSerializer, SerializerRefusedError),
        (FromSigning, SignatureError),
        (FromExecutor, JobTimeoutError),
        (FromPayload, ArgumentsError),
        (FromRetry, Retry),
        (FromRetryFail, Fail),
    ]

    assert all(old is new for old, new in pairs)


#: ``from taskforge[.module] import a, b as c`` in the README, in code blocks or inline code.
_README_IMPORT = re.compile(r"from (taskforge[\w.]*) import (\([^)]*\)|[\w, ]+(?: as \w+)?)")


def readme_imports() -> list[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for module, names in _README_IMPORT.findall(README.read_text()):
        for item in names.strip("()").split(","):
            name = item.split(" as ")[0].strip()
            if name:
                found.add((module, name))
    return sorted(found)


def test_the_readme_imports_something() -> None:
    assert ("taskforge", "task") in readme_imports()
    assert ("taskforge.partition", "Partitioned") in readme_imports()


@pytest.mark.parametrize(("module_name", "name"), readme_imports())
def test_readme_import_resolves(module_name: str, name: str) -> None:
    if _extra_missing(module_name):
        pytest.skip(f"{module_name} needs an extra that is not installed")
    module = importlib.import_module(module_name)

    found = hasattr(module, name) or importlib.util.find_spec(f"{module_name}.{name}") is not None

    assert found, f"the README imports {name} from {module_name}, which has no such name"
