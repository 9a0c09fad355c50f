"""The ``taskforge`` command line (typer), one module per command group.

:mod:`~taskforge.cli.app` holds the root command, the options the groups share and the
entry point (``taskforge = "taskforge.cli:main"``); importing this package registers every
group on it. Each command reads and acts through the library (:class:`~taskforge.admin.Admin`
and its dead-letter API, :mod:`taskforge.health`, the client, the worker) and only parses
options and prints.
"""

# isort: off
# The order of these imports is the order `taskforge --help` lists the commands in.
from taskforge.cli import worker, queues, job, dead, workflow  # noqa: F401
from taskforge.cli import enqueue, events, workers, health, cron, dashboard  # noqa: F401

# isort: on
from taskforge.cli.app import JsonFormatter, cli, load_app, main, setup_logging
from taskforge.cli.job import record_json
from taskforge.cli.worker import split_queues
from taskforge.deadletters import parse_duration
from taskforge.health import HEALTH_KEYS

__all__ = [
    "HEALTH_KEYS",
    "JsonFormatter",
    "cli",
    "load_app",
    "main",
    "parse_duration",
    "record_json",
    "setup_logging",
    "split_queues",
]
