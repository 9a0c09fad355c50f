"""The ``taskforge`` command line (typer), one module per command group.

:mod:`~taskforge.cli.app` holds the root command, the options the groups share and the entry
point (``taskforge = "taskforge.cli:main"``). Each group registers itself on the root command
when its module is imported: :func:`main` imports only the worker's group for ``taskforge
worker`` (which loads neither rich nor the admin API), every group for any other command;
``taskforge.cli.cli`` is the root command with every group registered. Each command reads and
acts through the library (:class:`~taskforge.admin.Admin` and its dead-letter API,
:mod:`taskforge.health`, the client, the worker) and only parses options and prints.
"""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
import typing as _typing

from taskforge.cli import app as _app
from taskforge.cli.app import JsonFormatter, load_app, setup_logging

#: The command groups, in the order ``taskforge --help`` lists their commands.
GROUPS = ("worker", "queues", "job", "dead", "workflow", "enqueue", "events", "workers",
          "health", "cron", "dashboard")  # fmt: skip
#: Commands that start without the other groups (they import neither rich nor the admin API).
#: Their module defines two commands, so typer still runs it as a group, not as one command.
_ALONE = {"worker": "worker", "demo": "worker"}

#: Names served on first use (PEP 562), and their modules.
_LAZY = {
    "HEALTH_KEYS": "taskforge.health",
    "parse_duration": "taskforge.deadletters",
    "record_json": "taskforge.cli.job",
    "split_queues": "taskforge.cli.worker",
}

if _typing.TYPE_CHECKING:
    import typer

    from taskforge.cli.job import record_json
    from taskforge.cli.worker import split_queues
    from taskforge.deadletters import parse_duration
    from taskforge.health import HEALTH_KEYS

    cli: typer.Typer
else:

    def __getattr__(name: str) -> _typing.Any:
        if name == "cli":
            return registered()
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'taskforge.cli' has no attribute {name!r}")
        return getattr(_importlib.import_module(module), name)


def registered(command: str | None = None) -> typer.Typer:
    """The root command with ``command``'s group registered when it starts alone (``worker``,
    ``demo``), else with every group (``--help`` lists them all)."""
    group = _ALONE.get(command or "")
    for name in (group,) if group else GROUPS:
        _importlib.import_module(f"taskforge.cli.{name}")
    return _app.cli


def main() -> None:
    """Console-script entry point: registers the group of the command given, then runs it."""
    words = [arg for arg in _sys.argv[1:2] if not arg.startswith("-")]
    registered(words[0] if words else None)
    _app.main()


__all__ = [
    "GROUPS",
    "HEALTH_KEYS",
    "JsonFormatter",
    "cli",
    "load_app",
    "main",
    "parse_duration",
    "record_json",
    "registered",
    "setup_logging",
    "split_queues",
]
