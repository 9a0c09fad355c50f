"""``taskforge worker`` (run jobs until stopped: SIGTERM/SIGINT once to drain, twice to hand
jobs back) and ``taskforge demo`` (the whole flow on an in-process server)."""

from __future__ import annotations

import functools
import gc
import logging
import math
import signal
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from taskforge.app import Taskforge
from taskforge.cli.app import LogFormat, LogLevel, RedisUrl, cli, load_app, setup_logging
from taskforge.cli.output import fail
from taskforge.errors import BrokerConnectionError, ConfigurationError, TaskforgeError
from taskforge.options import POOL_KINDS
from taskforge.settings import Settings
from taskforge.worker import Worker
from taskforge.worker.outcome_log import JsonLines

if TYPE_CHECKING:  # imported by the workers that use it: it loads multiprocessing
    from taskforge.worker.pool import ProcessPool


def split_queues(values: list[str] | None) -> list[str]:
    """``-Q a,b -Q c`` (Celery's comma lists, repeats too) as ``["a", "b", "c"]``."""
    names = [name.strip() for value in values or [] for name in value.split(",")]
    return [name for name in names if name] or ["default"]


@cli.command()
def worker(
    modules: Annotated[
        list[str],
        typer.Argument(help="modules or files that define tasks (pkg.mod[:app], tasks.py)"),
    ],
    queue: Annotated[
        list[str] | None, typer.Option("-Q", "--queue", help="queue (repeatable, or a,b,c)")
    ] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency", min=1)] = 10,
    burst: Annotated[bool, typer.Option("--burst", help="exit once the queues are empty")] = False,
    grace: Annotated[
        float, typer.Option("--grace", help="seconds running jobs get on stop")
    ] = 10.0,
    redis_url: RedisUrl = None,
    log_level: LogLevel = "INFO",
    log_format: LogFormat = "text",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=0, max=65535, help="serve Prometheus /metrics on this port"
        ),
    ] = None,
    json_outcomes: Annotated[
        bool, typer.Option("--json", help="print one JSON line per job outcome on stdout")
    ] = False,
    pool: Annotated[
        str, typer.Option("--pool", help="where sync tasks run: thread or process")
    ] = "thread",
    max_tasks_per_child: Annotated[
        int | None, typer.Option(min=1, help="--pool process: replace a child after N jobs")
    ] = None,
    max_memory_per_child_mb: Annotated[
        float | None,
        typer.Option(help="--pool process: replace a child once its RSS passes this (MiB)"),
    ] = None,
) -> None:
    """Run a worker: fetch jobs in strict priority order and run them."""
    if not math.isfinite(grace) or grace < 0:
        raise typer.BadParameter(f"--grace must be a finite number of seconds >= 0, got {grace}")
    setup_logging(log_level, log_format)
    try:
        app = load_app(modules)
        settings = app.configure(redis_url=redis_url) if redis_url else app.settings
    except ConfigurationError as exc:  # the environment's settings (REDIS_URL='' ...)
        raise fail(str(exc), 2) from None
    try:
        w = Worker(
            settings,
            app.registry,
            queues=split_queues(queue),
            concurrency=concurrency,
            burst=burst,
            grace_s=grace,
            metrics_port=metrics_port,
            middleware=app.middleware,
            outcome_log=JsonLines() if json_outcomes else None,
            pool=_pool(pool, modules, app, settings, concurrency, max_tasks_per_child,
                       max_memory_per_child_mb),
        )  # fmt: skip
    except ValueError as exc:  # a bad queue name or Redis URL (ConfigurationError included)
        raise fail(f"cannot start worker on {settings.masked_url()}: {exc}", 2) from None
    # This process is ours: what the imports and the app made lives as long as it, so later
    # collections skip it (the permanent generation; reference counting still frees it).
    gc.freeze()
    try:
        anyio.run(_run_worker, w)
    except (BrokerConnectionError, ConfigurationError) as exc:  # Redis down, tasks not loadable
        raise fail(f"cannot start worker: {exc}") from None
    except OSError as exc:
        if metrics_port is None:
            raise
        raise fail(f"cannot start worker: metrics port {metrics_port}: {exc}") from None


def _pool(
    kind: str,
    modules: list[str],
    app: Taskforge,
    settings: Settings,
    size: int,
    max_tasks: int | None,
    max_memory_mb: float | None,
) -> ProcessPool | None:
    """The process pool ``--pool process`` asks for (its children load the app as we did).

    A thread-pool worker whose app has ``@task(pool="process")`` sync tasks gets one too, for
    those tasks only: one child starts with the worker (so a task module that cannot load in a
    child stops it at once, as with ``--pool process``), the others when jobs need them.
    """
    if kind not in POOL_KINDS:
        raise typer.BadParameter(f"--pool must be one of {', '.join(POOL_KINDS)}, got {kind!r}")
    per_task = any(t.opts.pool == "process" and not t.is_async for t in app.registry)
    if kind == "thread" and not per_task:
        if max_tasks is not None or max_memory_mb is not None:
            raise typer.BadParameter(
                "--max-tasks/memory-per-child need --pool process (or a task with pool='process')"
            )
        return None
    from taskforge.worker.pool import ProcessPool

    return ProcessPool(
        functools.partial(load_app, modules),
        settings,
        size=size,
        max_tasks_per_child=max_tasks,
        max_memory_per_child_mb=max_memory_mb,
        preload=["taskforge.cli", *(spec.partition(":")[0] for spec in modules)],
        default=kind == "process",
        prestart=None if kind == "process" else 1,
    )


async def _run_worker(w: Worker) -> None:
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_signals, w)
            await w.run()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The task group wraps even a lone error; unwrap it so worker()'s except clauses (a
        # one-line start error instead of a traceback) see it.
        if len(group.exceptions) == 1:
            raise group.exceptions[0]  # noqa: B904 - keep the error's own cause chain
        raise


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
    from taskforge.demo import run_demo

    try:
        anyio.run(run_demo, jobs)
    except TaskforgeError as exc:
        raise fail(str(exc)) from None


__all__ = ["demo", "split_queues", "worker"]
