"""The root ``taskforge`` command: the Typer app every group registers on, the options the
groups share, logging setup, task-module loading and the console-script entry point."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Annotated, Any

import typer

from taskforge import loader
from taskforge.app import Taskforge
from taskforge.errors import ConfigurationError

cli = typer.Typer(
    name="taskforge",
    help="taskforge: Redis job queue. Run workers, inspect queues, replay dead jobs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RedisUrl = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis URL (default: $REDIS_URL)", show_default=False),
]
LogLevel = Annotated[str, typer.Option("-l", "--log-level", help="DEBUG, INFO, WARNING, ERROR")]
LogFormat = Annotated[str, typer.Option("--log-format", help="text or json (one object per line)")]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
QueueFilter = Annotated[
    list[str] | None,
    typer.Option("-Q", "--queue", help="queue (repeatable; default: every known queue)"),
]
TaskPattern = Annotated[
    str | None, typer.Option("--task", help="task name or glob (email.*)", show_default=False)
]


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Configure the root logger for the CLI."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        raise typer.BadParameter(f"--log-format must be text or json, got {fmt!r}")
    if level.upper() not in _LOG_LEVELS:
        raise typer.BadParameter(
            f"--log-level must be one of {', '.join(_LOG_LEVELS)}, got {level!r}"
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def load_app(modules: list[str]) -> Taskforge:
    """Import task modules or files (``pkg.mod[:app]``, ``tasks.py``); see taskforge.loader."""
    try:
        return loader.load_app(modules)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc)) from exc


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        cli()
    finally:
        logging.getLogger("taskforge.cli").debug("cli ran %.3fs", time.monotonic() - started)


__all__ = [
    "JsonFormatter",
    "JsonOut",
    "LogFormat",
    "LogLevel",
    "QueueFilter",
    "RedisUrl",
    "TaskPattern",
    "cli",
    "load_app",
    "main",
    "setup_logging",
]
