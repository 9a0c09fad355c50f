"""How every command writes: rich tables on stdout, JSON for ``--json``, one ``error:`` line
on stderr with an exit code, and the time formats the tables share."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # imported where used: `taskforge worker` prints no table
    from rich.console import Console


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr); not a terminal (pipes, tests): a wide fixed width,
    so ids and errors are never folded."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS") or 200)
    return Console(file=stream, highlight=False, width=width, soft_wrap=False)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (anything else as its ``str``)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def when(ms: int | None) -> str:
    """A timestamp in ms as ISO 8601 UTC, ``-`` when unset."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def ago(seconds: float) -> str:
    """A duration the short way: ``4.2s``, ``3.0m``, ``1.5h``, ``2.0d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


__all__ = ["ago", "console", "fail", "print_json", "when"]
