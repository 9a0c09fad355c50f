"""The ``taskforge`` command line (typer)."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import time
from typing import Annotated, Any

import anyio
import typer

from taskforge import demo as demo_module
from taskforge.app import Taskforge, default_app
from taskforge.errors import BrokerConnectionError, TaskforgeError
from taskforge.worker import Worker

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
LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR")]
LogFormat = Annotated[str, typer.Option("--log-format", help="text or json (one object per line)")]


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
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def load_app(modules: list[str]) -> Taskforge:
    """Import task modules; ``pkg.mod:attr`` names the app, else the default app is used."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app = default_app
    for spec in modules:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
        if attr:
            found = getattr(module, attr, None)
            if not isinstance(found, Taskforge):
                raise typer.BadParameter(f"{spec!r} is not a taskforge.Taskforge app")
            app = found
    return app


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@cli.command()
def worker(
    modules: Annotated[list[str], typer.Argument(help="modules that define tasks (pkg.mod[:app])")],
    queue: Annotated[
        list[str] | None, typer.Option("-Q", "--queue", help="queue (repeatable)")
    ] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency", min=1)] = 10,
    burst: Annotated[bool, typer.Option("--burst", help="exit once the queues are empty")] = False,
    grace: Annotated[
        float, typer.Option("--grace", help="seconds running jobs get on stop")
    ] = 10.0,
    redis_url: RedisUrl = None,
    log_level: LogLevel = "INFO",
    log_format: LogFormat = "text",
) -> None:
    """Run a worker: fetch jobs in strict priority order and run them."""
    setup_logging(log_level, log_format)
    app = load_app(modules)
    settings = app.configure(redis_url=redis_url) if redis_url else app.settings
    w = Worker(
        settings,
        app.registry,
        queues=queue or ["default"],
        concurrency=concurrency,
        burst=burst,
        grace_s=grace,
    )
    try:
        anyio.run(_run_worker, w)
    except BrokerConnectionError as exc:
        raise fail(f"cannot start worker: {exc}") from None


async def _run_worker(w: Worker) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_signals, w)
        await w.run()
        tg.cancel_scope.cancel()


async def _signals(w: Worker) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                logging.getLogger("taskforge.worker").info("%s: stopping gracefully", name)
                w.stop()
            else:
                logging.getLogger("taskforge.worker").info("%s again: handing jobs back now", name)
                w.stop_now()


@cli.command()
def demo(
    jobs: Annotated[int, typer.Option(help="jobs per priority")] = 3,
) -> None:
    """Show jobs flowing through priorities, a retry, a dead letter and the events (no Redis)."""
    try:
        anyio.run(demo_module.run_demo, jobs)
    except TaskforgeError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        cli()
    finally:
        logging.getLogger(__name__).debug("cli ran %.3fs", time.monotonic() - started)


if __name__ == "__main__":
    main()
