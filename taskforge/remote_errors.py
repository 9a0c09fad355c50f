"""A task's exception, rebuilt where ``handle.result()`` is called, without pickle.

The worker records the exception's type name (``ValueError``, ``billing.errors.CardDeclined``),
message and traceback text. ``result()`` raises :class:`~taskforge.errors.TaskFailedError`
carrying the three. When the original class is *safe to name*, the error raised is an instance of
a class derived from both ``TaskFailedError`` and the original, so ``except CardDeclined`` and
``except JobFailedError`` both catch it. Safe to name means, and nothing else:

* a builtin exception (a subclass of ``Exception`` in :mod:`builtins`: ``ValueError``,
  ``KeyError``, ``TimeoutError``...; never ``SystemExit`` or ``KeyboardInterrupt``), or
* an ``Exception`` subclass defined at module level in a module that holds a task registered on
  the caller's app, and that the caller has already imported.

Nothing is imported and no constructor of the original class runs: the instance is made from the
recorded text only, so a record cannot make the caller run code. A class that cannot be merged
(a conflicting layout or metaclass) leaves the plain ``TaskFailedError``.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Iterable
from typing import Any

from taskforge.errors import TaskFailedError

_merged: dict[type[BaseException], type[TaskFailedError] | None] = {}


def find_class(type_name: str, modules: Iterable[str]) -> type[BaseException] | None:
    """The exception class ``type_name`` names, if it is safe to name (see module docstring)."""
    module_name, _, qualname = type_name.rpartition(".")
    if not module_name:
        found = getattr(builtins, type_name, None)
    elif module_name in set(modules) and module_name in sys.modules:
        found = getattr(sys.modules[module_name], qualname, None)
    else:
        return None
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return None


def rebuild(
    job_id: str,
    status: str,
    exc_type: str,
    message: str | None,
    traceback: str | None,
    modules: Iterable[str] = (),
) -> TaskFailedError:
    """The error ``result()`` raises for a job whose task raised ``exc_type``."""
    original = find_class(exc_type, modules)
    merged = _merged_class(original) if original is not None else None
    if merged is None:
        return TaskFailedError(job_id, status, exc_type, message, traceback)
    try:
        error: TaskFailedError = merged.__new__(merged, message or "")
    except TypeError:  # a __new__ of the original's own that wants other arguments
        return TaskFailedError(job_id, status, exc_type, message, traceback)
    TaskFailedError.__init__(error, job_id, status, exc_type, message, traceback)
    return error


def _merged_class(original: type[BaseException]) -> type[TaskFailedError] | None:
    if original not in _merged:
        try:
            namespace: dict[str, Any] = {
                "__module__": original.__module__,
                "__qualname__": original.__qualname__,
                "__doc__": f"A remote {original.__qualname__}, as TaskFailedError.",
            }
            _merged[original] = type(original.__name__, (TaskFailedError, original), namespace)
        except TypeError:  # layout or metaclass conflict: no merge
            _merged[original] = None
    return _merged[original]


__all__ = ["find_class", "rebuild"]
