"""Finding an app from what a user types: a module path or a file, with an optional ``:app``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from taskforge.app import Taskforge, default_app
from taskforge.errors import ConfigurationError


def load_app(specs: Sequence[str]) -> Taskforge:
    """Import each spec's module; the last ``module:attr`` names the app, else the default app.

    A spec is a module path (``pkg.tasks``), a file path (``tasks.py``, ``src/pkg/tasks.py``),
    either optionally followed by ``:attr`` naming a :class:`Taskforge`.

    Raises:
        ConfigurationError: a file that does not exist, a module that does not import, or an
            ``attr`` that is not a taskforge app.
    """
    app = default_app
    for spec in specs:
        target, _, attr = spec.partition(":")
        module = import_target(target)
        if attr:
            found = getattr(module, attr, None)
            if not isinstance(found, Taskforge):
                raise ConfigurationError(
                    f"{spec!r}: {module.__name__}.{attr} is not a taskforge.Taskforge app "
                    f"(found {type(found).__name__}); name the app object, e.g. "
                    f"{target}:app for app = Taskforge(...)"
                )
            app = found
    return app


def import_target(target: str) -> ModuleType:
    """Import a module path or a ``.py`` file (as the module its package layout gives it)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    name = module_name_of(Path(target)) if _is_path(target) else target
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {name!r} ({exc}); give a module path (pkg.tasks) importable from "
            f"{os.getcwd()}, or a file path (tasks.py)"
        ) from exc


def _is_path(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target


def module_name_of(path: Path) -> str:
    """The dotted name of a ``.py`` file: its package parents (folders with ``__init__.py``)
    joined to its stem; the folder above the top package goes on ``sys.path``."""
    path = path.resolve()
    if path.suffix != ".py" or not path.is_file():
        raise ConfigurationError(
            f"no Python file {str(path)!r}; give an existing .py file, or a module path (pkg.tasks)"
        )
    parts = [] if path.stem == "__init__" else [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return ".".join(parts)


__all__ = ["import_target", "load_app", "module_name_of"]
