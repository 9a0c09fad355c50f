"""The registry: task name -> :class:`~taskforge.task.Task`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from taskforge.call import Periodic
from taskforge.errors import ConfigurationError, UnknownTaskError
from taskforge.task import Task


class Registry:
    """Tasks by name. A worker runs only what its registry knows."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._periodic: dict[str, Periodic] = {}

    def add(self, task: Task[Any, Any]) -> None:
        """Register ``task``. Re-registering the same function (a module reload) is allowed."""
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn.__qualname__ != task.fn.__qualname__:
            raise ConfigurationError(
                f"task name {task.name!r} is taken by {existing.fn.__module__}."
                f"{existing.fn.__qualname__}; pass name=... to tell them apart"
            )
        self._tasks[task.name] = task

    def get(self, name: str) -> Task[Any, Any]:
        """The task named ``name``. Raises UnknownTaskError."""
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskError(
                f"no task named {name!r}; registered: {sorted(self._tasks)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task[Any, Any]]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def names(self) -> list[str]:
        """Registered task names, sorted."""
        return sorted(self._tasks)

    def add_periodic(self, periodic: Periodic) -> None:
        """Register a periodic call; the same name with a different call or schedule is an error."""
        existing = self._periodic.get(periodic.name)
        if existing is not None and existing != periodic:
            raise ConfigurationError(
                f"periodic name {periodic.name!r} is taken by another call or schedule; "
                "pass name=... to tell them apart"
            )
        self._periodic[periodic.name] = periodic

    def periodics(self) -> list[Periodic]:
        """Registered periodic calls, by name."""
        return [self._periodic[name] for name in sorted(self._periodic)]


__all__ = ["Registry"]
