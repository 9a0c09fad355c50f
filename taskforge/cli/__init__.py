"""The ``taskforge`` command line (typer), one module per command group."""

from taskforge.cli.app import HEALTH_KEYS, cli, load_app, main, parse_duration, split_queues

__all__ = ["HEALTH_KEYS", "cli", "load_app", "main", "parse_duration", "split_queues"]
