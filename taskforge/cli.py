"""The ``taskforge`` command line (typer)."""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from taskforge import demo as demo_module
from taskforge import loader
from taskforge.admin import RATE_WINDOW_MIN, Admin
from taskforge.app import Taskforge
from taskforge.client import Client
from taskforge.cron.runner import cron_status
from taskforge.deadletters import (
    DEAD_BATCH,
    DeadFilter,
    DeadResult,
    OnBatch,
    parse_duration,  # noqa: F401 - tests and users import it here
)
from taskforge.errors import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    EnqueueError,
    JobNotFoundError,
    TaskforgeError,
)
from taskforge.health import HEALTH_KEYS, health_check  # noqa: F401 - cli.HEALTH_KEYS stays
from taskforge.job import PRIORITY_ORDER, JobRecord, JobStatus
from taskforge.protocol.brokers import AsyncBroker, SyncBroker
from taskforge.protocol.inspection import Series
from taskforge.protocol.keys import check_queue_name
from taskforge.settings import Settings
from taskforge.task import Call, TaskOptions, coerce_priority, when_to_delay
from taskforge.worker import Worker
from taskforge.worker.outcome_log import JsonLines
from taskforge.worker.pool import POOLS, ProcessPool
from taskforge.workflow_cli import warn_revived_members, workflow_cli

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


def split_queues(values: list[str] | None) -> list[str]:
    """``-Q a,b -Q c`` (Celery's comma lists, repeats too) as ``["a", "b", "c"]``."""
    names = [name.strip() for value in values or [] for name in value.split(",")]
    return [name for name in names if name] or ["default"]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


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
    if kind not in POOLS:
        raise typer.BadParameter(f"--pool must be one of {', '.join(POOLS)}, got {kind!r}")
    per_task = any(t.opts.pool == "process" and not t.is_async for t in app.registry)
    if kind == "thread" and not per_task:
        if max_tasks is not None or max_memory_mb is not None:
            raise typer.BadParameter(
                "--max-tasks/memory-per-child need --pool process (or a task with pool='process')"
            )
        return None
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
    try:
        anyio.run(demo_module.run_demo, jobs)
    except TaskforgeError as exc:
        raise fail(str(exc)) from None


# --------------------------------------------------------------------------- operations

JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
QueueFilter = Annotated[
    list[str] | None,
    typer.Option("-Q", "--queue", help="queue (repeatable; default: every known queue)"),
]


def _console(*, stderr: bool = False) -> Console:
    # Not a terminal (pipes, tests): a wide fixed width, so ids and errors are never folded.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS") or 200)
    return Console(file=stream, highlight=False, width=width, soft_wrap=False)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _settings(redis_url: str | None) -> Settings:
    try:
        return Settings.from_env(redis_url=redis_url)
    except ConfigurationError as exc:
        raise fail(str(exc), 2) from None


def _bad_url(settings: Settings, exc: ValueError) -> typer.Exit:
    if isinstance(exc, ConfigurationError):  # ours: it names the masked URL already
        return fail(settings.scrub(str(exc)), 2)
    return fail(f"cannot use Redis URL {settings.masked_url()}: {settings.scrub(str(exc))}", 2)


@contextmanager
def _connect(redis_url: str | None) -> Iterator[SyncBroker]:
    """A blocking broker for one command; Redis errors become one line and exit code 1."""
    settings = _settings(redis_url)
    try:
        broker = SyncBroker(settings)
    except ValueError as exc:  # redis-py refuses the URL before connecting
        raise _bad_url(settings, exc) from None
    try:
        yield broker
    except BrokerError as exc:  # its message carries the URL with the password masked
        raise fail(str(exc)) from None
    finally:
        broker.close()


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


# --------------------------------------------------------------------------- queues


@contextmanager
def _admin(redis_url: str | None) -> Iterator[Admin]:
    """The operator API for one command; Redis errors and unknown jobs become one line and exit
    code 1, bad input (a queue name, a selection) one line and exit code 2."""
    with _connect(redis_url) as broker:
        try:
            yield Admin(broker.settings, broker=broker)
        except JobNotFoundError as exc:
            raise fail(str(exc)) from None
        except ConfigurationError as exc:
            raise fail(str(exc), 2) from None


queues_cli = typer.Typer(
    help="Queues: depths and rates; `show NAME` lists waiting jobs; `purge NAME` empties one.",
    invoke_without_command=True,
)
cli.add_typer(queues_cli, name="queues")


@queues_cli.callback()
def queues(
    ctx: typer.Context,
    queue: QueueFilter = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Queue depths (ready per priority, scheduled, in flight, dead) and recent jobs/min."""
    if ctx.invoked_subcommand is not None:
        return
    with _admin(redis_url) as admin:
        overview = admin.overview(queue, minutes=RATE_WINDOW_MIN)
    rows = [_queue_row(d.to_json(), overview.series) for d in overview.depths]
    if as_json:
        _print_json(rows)
        return
    table = Table("queue", *(p.value for p in PRIORITY_ORDER), "scheduled", "in flight", "dead")
    table.add_column(f"done/min ({RATE_WINDOW_MIN}m)")
    table.add_column(f"failed/min ({RATE_WINDOW_MIN}m)")
    for r in rows:
        ready, recent = r["ready"], r["recent"]
        table.add_row(
            r["queue"], *(str(ready[p.value]) for p in PRIORITY_ORDER),
            str(r["scheduled"]), str(r["inflight"]), str(r["dead"]),
            f"{recent['done_per_min']:g}", f"{recent['failed_per_min']:g}",
        )  # fmt: skip
    _console().print(table)


def _queue_row(row: dict[str, Any], series: Series) -> dict[str, Any]:
    points = series.per_queue.get(row["queue"], [])
    done, failed, dead = (sum(p.get(k, 0) for p in points) for k in ("done", "failed", "dead"))
    row["recent"] = {
        "window_minutes": len(points),
        "done": done,
        "failed": failed,
        "dead": dead,
        "done_per_min": round(done / max(1, len(points)), 2),
        "failed_per_min": round(failed / max(1, len(points)), 2),
    }
    return row


@queues_cli.command("show")
def queues_show(
    name: Annotated[str, typer.Argument(help="the queue")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="jobs per section")] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0, help="skip this many per section")] = 0,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Waiting jobs of one queue, in the order they run: ready (per priority), then scheduled."""
    with _admin(redis_url) as admin:
        page = admin.listing(name, offset=offset, limit=limit)
    if as_json:
        _print_json(page.to_json())
        return
    d = page.depth
    totals = {**d.ready, "scheduled": d.scheduled}
    console = _console()
    for section, jobs in page.sections.items():
        shown = f"{offset + 1}-{offset + len(jobs)}" if jobs else "none"
        console.print(f"[bold]{section}[/bold] ({totals[section]} waiting; showing {shown})")
        if not jobs:
            continue
        table = Table("id", "task", "status", "attempts", "runs at")
        for j in jobs:
            table.add_row(j.id, escape(j.task or "?"), j.status or "?", str(j.attempts),
                          _when(j.at_ms))  # fmt: skip
        console.print(table)
    if any(len(jobs) == limit for jobs in page.sections.values()):
        typer.echo(f"(more: --offset {offset + limit})")


@queues_cli.command("purge")
def queues_purge(
    name: Annotated[str, typer.Argument(help="the queue")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Delete every ready and scheduled job of a queue, at once (asks first unless --yes).

    Jobs running now and dead letters are kept.
    """
    with _admin(redis_url) as admin:
        (depth,) = admin.depths([check_queue_name(name)])
        waiting = depth.ready_total + depth.scheduled
        if waiting and not yes:
            ask = f"Delete the {waiting} waiting job(s) of queue {name!r} for good?"
            if not typer.confirm(ask, err=True):
                raise fail("aborted; nothing deleted")
        purged = admin.purge_queue(name)
    if as_json:
        _print_json({"queue": name, "purged": purged.total, "ready": purged.ready,
                     "scheduled": purged.scheduled})  # fmt: skip
        return
    typer.echo(f"purged {purged.total} job(s) from queue {name}")


# --------------------------------------------------------------------------- one job


class _JobGroup(typer.core.TyperGroup):
    """``taskforge job ID`` shows a job (``show`` is implied); ``job cancel ID`` cancels one."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


job_cli = typer.Typer(cls=_JobGroup, help="One job, by id alone: show or cancel it.",
                      no_args_is_help=True)  # fmt: skip
cli.add_typer(job_cli, name="job")


@job_cli.command("show")
def job(
    job_id: Annotated[str, typer.Argument(help="the job id")],
    queue: QueueFilter = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """A job's record (found in any queue): status, attempts, timestamps, error, result."""
    with _admin(redis_url) as admin:
        found = _find_job(admin, job_id, queue)
    _show_record(*found, as_json=as_json)


@job_cli.command("cancel")
def job_cancel(
    job_id: Annotated[str, typer.Argument(help="the job id")],
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Cancel a job: a waiting one at once, a running one when its worker acts on the request."""
    with _admin(redis_url) as admin:
        status = admin.cancel(job_id)
    if as_json:
        _print_json({"id": job_id, "status": status.value})
    else:
        typer.echo(f"job {job_id}: {status.value}")
    if status in (JobStatus.SUCCEEDED, JobStatus.DEAD):
        raise typer.Exit(1)  # already over: nothing was cancelled


def _find_job(admin: Admin, job_id: str, wanted: Sequence[str] | None) -> tuple[str, JobRecord]:
    found = admin.find(job_id, queue=wanted[0] if wanted else None)
    if found is None:
        raise fail(f"no job {job_id!r} in any queue (never enqueued, purged, or expired)")
    return found


def record_json(queue: str, r: JobRecord) -> dict[str, Any]:
    """A job record as the ``--json`` output shows it."""
    data = r.model_dump(mode="json")
    data["queue"] = queue
    data["task"] = r.task
    return data


def _show_record(queue: str, r: JobRecord, *, as_json: bool) -> None:
    if as_json:
        _print_json(record_json(queue, r))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    envelope = r.job
    rows: list[tuple[str, str]] = [
        ("id", r.id),
        ("status", r.status.value),
        ("task", r.task or "? (undecodable envelope)"),
        ("queue", queue),
        ("priority", envelope.priority.value if envelope else "-"),
        ("attempts", f"{r.attempts} (max retries {envelope.max_retries if envelope else '?'})"),
        ("deliveries", str(r.deliveries)),
        ("args", json.dumps(envelope.args) if envelope else "-"),
        ("kwargs", json.dumps(envelope.kwargs) if envelope else "-"),
        ("created", _when(r.created_ms)),
        ("enqueued", _when(r.enqueued_ms)),
        ("started", _when(r.started_ms)),
        ("finished", _when(r.finished_ms)),
        ("worker", r.worker or "-"),
    ]
    if r.status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
        rows.append(("runs at", _when(r.run_at_ms)))
    if r.error:
        rows.append(("error", f"{r.error_type or 'Error'}: {r.error}"))
    if r.status is JobStatus.SUCCEEDED:
        rows.append(("result", json.dumps(r.result)))
    for name, value in rows:
        table.add_row(name, escape(value))
    console = _console()
    console.print(table)
    if r.traceback:
        console.print("\n[bold]traceback[/bold]")
        console.print(escape(r.traceback.rstrip()))


# --------------------------------------------------------------------------- dead letters

dead_cli = typer.Typer(
    help="The dead-letter queue: list, show, requeue, purge.", no_args_is_help=True
)
cli.add_typer(dead_cli, name="dead")
cli.add_typer(workflow_cli, name="workflow")

TaskPattern = Annotated[
    str | None, typer.Option("--task", help="task name or glob (email.*)", show_default=False)
]
ErrorText = Annotated[
    str | None,
    typer.Option("--error", help="text in the error (case-insensitive)", show_default=False),
]
OlderThan = Annotated[
    str | None,
    typer.Option(
        "--older-than", help="dead for longer than (30s, 15m, 2h, 7d)", show_default=False
    ),
]
NewerThan = Annotated[
    str | None,
    typer.Option("--newer-than", help="dead for less than (30s, 15m, 2h, 7d)", show_default=False),
]
JobIds = Annotated[list[str] | None, typer.Argument(help="job ids", show_default=False)]
AllFlag = Annotated[bool, typer.Option("--all", help="every dead job (that matches the filters)")]


def _dead_filter(
    task: str | None, error: str | None, older: str | None, newer: str | None
) -> DeadFilter:
    try:
        return DeadFilter.parse(task=task, error=error, older_than=older, newer_than=newer)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc)) from None


@dead_cli.command("list")
def dead_list(
    queue: QueueFilter = None,
    task: TaskPattern = None,
    error: ErrorText = None,
    older_than: OlderThan = None,
    newer_than: NewerThan = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="at most this many (0: all)")] = 50,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Dead-lettered jobs, oldest first, with their error."""
    flt = _dead_filter(task, error, older_than, newer_than)
    with _admin(redis_url) as admin:
        found = admin.dead_list(queues=queue, flt=flt, limit=limit)
    if as_json:
        _print_json([d.to_json() for d in found])
        return
    if not found:
        typer.echo("no dead jobs" + (" match" if flt.active else ""))
        return
    table = Table("id", "queue", "task", "dead for", "attempts", "error")
    for d in found:
        r = d.record
        attempts = str(r.attempts) if r else "-"
        table.add_row(d.id, d.queue, (r.task if r else None) or "?", _ago(d.age_s), attempts,
                      escape(d.reason[:120]))  # fmt: skip
    _console().print(table)
    if limit and len(found) == limit:
        typer.echo(f"(first {limit}; --limit 0 for all)")


@dead_cli.command("show")
def dead_show(
    job_id: Annotated[str, typer.Argument(help="the job id")],
    queue: QueueFilter = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """One dead job's record, traceback included."""
    with _admin(redis_url) as admin:
        where, record = _find_job(admin, job_id, queue)
    if record.status is not JobStatus.DEAD and not as_json:
        typer.echo(f"note: job {job_id} is not dead (status {record.status.value})", err=True)
    _show_record(where, record, as_json=as_json)


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[OnBatch]:
    """A progress bar once a set takes more than one batch; yields the library's callback."""
    bar = Progress(console=_console(stderr=True), transient=False)
    task_id: TaskID | None = None

    def on_batch(handled: int, total: int) -> None:
        nonlocal task_id
        if quiet or total <= DEAD_BATCH:
            return
        if task_id is None:
            bar.start()
            task_id = bar.add_task(label, total=total)
        bar.update(task_id, completed=handled)

    try:
        yield on_batch
    finally:
        if task_id is not None:
            bar.stop()


def _check_selection(job_ids: list[str] | None, flt: DeadFilter, every: bool) -> None:
    if job_ids and (every or flt.active):
        raise typer.BadParameter("give job ids, or filters/--all, not both")
    if not job_ids and not every and not flt.active:
        raise typer.BadParameter(
            "name the jobs: job ids, a filter (--task/--error/--older-than/--newer-than), or --all"
        )


@dead_cli.command("requeue")
def dead_requeue(
    job_ids: JobIds = None,
    queue: QueueFilter = None,
    every: AllFlag = False,
    task: TaskPattern = None,
    error: ErrorText = None,
    older_than: OlderThan = None,
    newer_than: NewerThan = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Move dead jobs back to their ready list (fresh attempts), in batches.

    Give job ids, or filters, or --all. Jobs that are no longer dead are skipped.
    """
    flt = _dead_filter(task, error, older_than, newer_than)
    _check_selection(job_ids, flt, every)
    with _admin(redis_url) as admin, _progress("requeueing", as_json) as on_batch:
        chosen = admin.dead_select(ids=job_ids or (), flt=flt, every=every, queues=queue)
        result = admin.dead_requeue(chosen, batch=DEAD_BATCH, on_batch=on_batch)
    _report("requeued", result, as_json)
    warn_revived_members(chosen)
    if job_ids and result.total == 0:
        raise typer.Exit(1)


def _report(verb: str, result: DeadResult, as_json: bool) -> None:
    if as_json:
        _print_json({verb: result.total, "skipped": result.skipped, "queues": result.done,
                     "not_found": result.not_found})  # fmt: skip
        return
    note = f" ({result.skipped} skipped: not dead or not found)" if result.skipped else ""
    where = ", ".join(f"{q}: {n}" for q, n in result.done.items() if n)
    typer.echo(f"{verb} {result.total} dead job(s)" + (f" [{where}]" if where else "") + note)
    for job_id in result.not_found:
        typer.echo(f"not found: {job_id}", err=True)


@dead_cli.command("purge")
def dead_purge(
    job_ids: JobIds = None,
    queue: QueueFilter = None,
    every: AllFlag = False,
    task: TaskPattern = None,
    error: ErrorText = None,
    older_than: OlderThan = None,
    newer_than: NewerThan = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Delete dead jobs for good (asks first unless --yes). Give job ids, filters, or --all."""
    flt = _dead_filter(task, error, older_than, newer_than)
    _check_selection(job_ids, flt, every)
    with _admin(redis_url) as admin:
        chosen = admin.dead_select(ids=job_ids or (), flt=flt, every=every, queues=queue)
        if chosen.count and not yes:
            where = ", ".join(f"{q}: {len(ids)}" for q, ids in chosen.chosen.items())
            if not typer.confirm(
                f"Delete {chosen.count} dead job(s) for good [{where}]?", err=True
            ):
                raise fail("aborted; nothing deleted")
        with _progress("purging", as_json) as on_batch:
            # The selection confirmed above, nothing more: a job dead since is not touched, and
            # one requeued since is skipped by the script.
            result = admin.dead_purge(chosen, batch=DEAD_BATCH, on_batch=on_batch)
    _report("purged", result, as_json)


# --------------------------------------------------------------------------- enqueue


def _json_arg(text: str, kind: type, option: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{option} is not JSON: {exc}") from None
    if not isinstance(value, kind):
        raise typer.BadParameter(f"{option} must be a JSON {'array' if kind is list else 'object'}")
    return value


@cli.command()
def enqueue(
    task_name: Annotated[str, typer.Argument(metavar="TASK", help="registered task name")],
    args: Annotated[str, typer.Option("--args", help="positional arguments, JSON array")] = "[]",
    kwargs: Annotated[str, typer.Option("--kwargs", help="keyword arguments, JSON object")] = "{}",
    queue: Annotated[str, typer.Option("-Q", "--queue")] = "default",
    priority: Annotated[str, typer.Option("--priority", help="high, normal or low")] = "normal",
    delay: Annotated[float, typer.Option("--delay", min=0, help="seconds before it runs")] = 0.0,
    max_retries: Annotated[int, typer.Option("--max-retries", min=0)] = 3,
    timeout: Annotated[float | None, typer.Option("--timeout", help="seconds per attempt")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="idempotency: a fixed id")] = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Enqueue a job by task name (nothing is imported; the worker must know the task)."""
    call_args = _json_arg(args, list, "--args")
    call_kwargs = _json_arg(kwargs, dict, "--kwargs")
    settings = _settings(redis_url)
    if settings.is_memory:
        raise fail(
            f"{settings.redis_url} is a server inside this command: the job would vanish when it"
            " exits. Point --redis-url (or REDIS_URL) at the Redis your workers use",
            2,
        )
    try:
        opts = TaskOptions(
            name=task_name, queue=queue, priority=coerce_priority(priority),
            max_retries=max_retries, timeout=timeout, job_id=job_id,
        ).checked()  # fmt: skip
        delay_s, _ = when_to_delay(delay)
        call = Call(task_name, tuple(call_args), call_kwargs, opts, delay_s=delay_s)
    except (ConfigurationError, EnqueueError) as exc:
        raise fail(str(exc), 2) from None
    client = Client(settings)
    try:
        handle = client.submit([call])[0]
        status = handle.status()
    except EnqueueError as exc:
        raise fail(str(exc), 2) from None
    except BrokerError as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:
        raise _bad_url(settings, exc) from None
    finally:
        client.close()
    if as_json:
        _print_json({"id": handle.id, "queue": queue, "task": task_name, "status": status,
                     "created": handle.created})  # fmt: skip
        return
    what = "enqueued" if handle.created else "already exists:"
    typer.echo(f"{what} {handle.id} {task_name} queue={queue} priority={priority} status={status}")


# --------------------------------------------------------------------------- events


@cli.command()
def events(
    queue: Annotated[list[str] | None, typer.Option("-Q", "--queue", help="repeatable")] = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="repeatable")] = None,
    task: TaskPattern = None,
    count: Annotated[
        int, typer.Option("--count", min=0, help="stop after N events (0: never)")
    ] = 0,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Tail job status events (the job:updates channel) live; Ctrl-C stops."""
    for s in status or []:
        if s not in {st.value for st in JobStatus}:
            raise typer.BadParameter(f"unknown status {s!r}; use {[st.value for st in JobStatus]}")
    settings = _settings(redis_url)
    with _connect(redis_url) as broker:  # fail fast: subscribe() would retry forever
        broker.run(broker.ops.server_time_ms())
    wanted = _EventFilter(set(queue or ()), set(status or ()), task)
    with suppress(KeyboardInterrupt):
        anyio.run(_tail, settings, wanted, count, as_json)


@dataclass(frozen=True, slots=True)
class _EventFilter:
    queues: set[str]
    statuses: set[str]
    task: str | None

    def matches(self, event: dict[str, Any]) -> bool:
        if self.queues and event.get("queue") not in self.queues:
            return False
        if self.statuses and event.get("status") not in self.statuses:
            return False
        return self.task is None or fnmatch.fnmatchcase(str(event.get("task", "")), self.task)


async def _tail(settings: Settings, wanted: _EventFilter, count: int, as_json: bool) -> None:
    broker = AsyncBroker(settings)
    ready = anyio.Event()
    seen = 0
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_announce, ready, settings.events_channel)
            async for _, data in broker.subscribe(settings.events_channel, ready=ready):
                try:
                    event = json.loads(data)
                except ValueError:
                    continue  # not ours
                if not isinstance(event, dict) or not wanted.matches(event):
                    continue
                typer.echo(data if as_json else _event_line(event))
                seen += 1
                if count and seen >= count:
                    tg.cancel_scope.cancel()
                    break
    finally:
        with anyio.CancelScope(shield=True):
            await broker.aclose()


async def _announce(ready: anyio.Event, channel: str) -> None:
    await ready.wait()
    typer.echo(f"listening on {channel} (Ctrl-C to stop)", err=True)


def _event_line(e: dict[str, Any]) -> str:
    ts = datetime.fromtimestamp(float(e.get("timestamp", 0)), UTC).strftime("%H:%M:%S.%f")[:-3]
    line = f"{ts} {e.get('status', '?'):<9} {e.get('task', '?')} queue={e.get('queue')} "
    line += f"job={e.get('job_id')} attempt={e.get('attempt')}"
    return line + (f" error={e['error']}" if e.get("error") else "")


# --------------------------------------------------------------------------- workers


@cli.command()
def workers(redis_url: RedisUrl = None, as_json: JsonOut = False) -> None:
    """Workers from their heartbeats: live ones, and lost ones (stopped beating without
    signing off: killed, or cut off from Redis), which are forgotten an hour later."""
    with _admin(redis_url) as admin:
        found = admin.workers()
    if as_json:
        _print_json([w.to_json() for w in found])
        return
    if not found:
        typer.echo("no live workers")
        return
    now = time.time()
    table = Table("id", "state", "host", "pid", "queues", "conc", "running", "processed",
                  "failed", "up", "last seen")  # fmt: skip
    for worker_info in found:
        w = worker_info.info
        running = f"{w.get('running', 0)}"
        if w.get("running_jobs"):
            running += " " + ",".join(w["running_jobs"][:3]) + (" ..." * (w["running"] > 3))
        table.add_row(
            worker_info.id, "[red]lost[/]" if worker_info.lost else "live",
            str(w.get("host")), str(w.get("pid")),
            ",".join(w.get("queues", [])), str(w.get("concurrency")), running,
            str(w.get("processed", 0)), str(w.get("failed", 0)),
            _ago(now - float(w.get("started", now))),
            _ago(now - float(w.get("last_seen", now))) + " ago",
        )  # fmt: skip
    _console().print(table)


# --------------------------------------------------------------------------- health


@cli.command()
def health(
    queue: QueueFilter = None,
    strict: Annotated[bool, typer.Option("--strict", help="exit 1 on warnings too")] = False,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Redis health (the guide's dict), queue depths, live workers and warnings.

    Exit 0 when healthy or degraded (warnings), 1 when Redis is unreachable (or, with --strict,
    on any warning): usable as a container health check.
    """
    settings = _settings(redis_url)
    try:
        broker = AsyncBroker(settings)
    except ValueError as exc:
        raise _bad_url(settings, exc) from None
    report = anyio.run(_health, broker, queue)
    if settings.is_memory and report["connected"]:
        report["status"] = "degraded" if report["status"] == "healthy" else report["status"]
        report["warnings"].insert(0, MEMORY_HEALTH_WARNING)
    if as_json:
        _print_json(report)
    else:
        _print_health(report)
    if report["status"] == "unhealthy" or (strict and report["status"] != "healthy"):
        raise typer.Exit(1)


MEMORY_HEALTH_WARNING = (
    "memory:// is a throwaway in-process server that lives as long as this command and holds"
    " nothing of any worker or producer: this checked no Redis. Pass --redis-url (or REDIS_URL)"
)


async def _health(broker: AsyncBroker, queues: list[str] | None) -> dict[str, Any]:
    try:
        return await health_check(broker, queues=queues)
    finally:
        with anyio.CancelScope(shield=True):
            await broker.aclose()


def _print_health(report: dict[str, Any]) -> None:
    console = _console()
    colour = {"healthy": "green", "degraded": "yellow"}.get(report["status"], "red")
    console.print(f"[bold {colour}]{report['status']}[/]")
    if not report.get("connected"):
        console.print(escape(str(report.get("error", "Redis did not answer"))))
        return
    for key in ("latency_ms", "version", "used_memory", "connected_clients", "uptime_seconds",
                "workers"):  # fmt: skip
        console.print(f"{key:<18} {report.get(key)}")
    if report["queues"]:
        table = Table("queue", *(p.value for p in PRIORITY_ORDER), "scheduled", "in flight", "dead")
        columns = ("high", "normal", "low", "scheduled", "inflight", "dead")
        for q, d in report["queues"].items():
            table.add_row(q, *(str(d.get(k, 0)) for k in columns))
        console.print(table)
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}")


# --------------------------------------------------------------------------- cron


@cli.command("cron")
def cron_list(
    modules: Annotated[list[str], typer.Argument(help="modules that define tasks (pkg.mod[:app])")],
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Periodic tasks: cron expression, catch-up policy, last tick claimed, next fire time."""
    app = load_app(modules)
    with _connect(redis_url) as broker:
        rows = broker.run(cron_status(broker.ops, app.registry.periodics()))
    if as_json:
        _print_json([r.as_dict() for r in rows])
        return
    if not rows:
        typer.echo("no periodic tasks")
        return

    def when(ms: int | None) -> str:
        if ms is None:
            return "-"
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    table = Table("name", "task", "queue", "cron", "timezone", "catch-up", "last tick", "next fire")
    for r in rows:
        d = r.as_dict()
        table.add_row(
            d["name"], d["task"], d["queue"], escape(d["cron"]), d["timezone"], d["catch_up"],
            when(r.last_tick_ms), when(r.next_fire_ms),
        )  # fmt: skip
    _console().print(table)


# --------------------------------------------------------------------------- dashboard


@cli.command("dashboard")
def dashboard_command(
    modules: Annotated[
        list[str] | None,
        typer.Argument(help="task modules (pkg.mod[:app]); needed only for the cron page"),
    ] = None,
    redis_url: RedisUrl = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8700,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="hide and refuse every action")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="require this token ($TASKFORGE_DASHBOARD_TOKEN)", show_default=False
        ),
    ] = None,
    basic_auth: Annotated[
        str | None,
        typer.Option(
            "--basic-auth",
            help="user:password ($TASKFORGE_DASHBOARD_BASIC_AUTH)",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Serve the web dashboard (the `dashboard` extra: pip install 'taskforge[dashboard]')."""
    try:
        # Optional dependencies: imported here so the CLI works without the extra.
        import uvicorn

        from taskforge.dashboard import DashboardConfig, create_app
    except ImportError as exc:
        extra = "pip install 'taskforge[dashboard]'"
        raise fail(f"the dashboard needs its extra: {extra} ({exc})", 2) from None
    setup_logging(log_level)
    settings = _settings(redis_url)
    registry = load_app(modules).registry if modules else None
    try:
        config = DashboardConfig.from_env(token=token, basic_auth=basic_auth,
                                          read_only=read_only or None)  # fmt: skip
        config.check_bind(host)
    except ConfigurationError as exc:
        raise fail(str(exc), 2) from None
    app = create_app(settings, config=config, registry=registry)
    mode = " (read-only)" if config.read_only else ""
    typer.echo(f"taskforge dashboard on http://{host}:{port}/ for {settings.masked_url()}{mode}",
               err=True)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False)


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        cli()
    finally:
        logging.getLogger(__name__).debug("cli ran %.3fs", time.monotonic() - started)


if __name__ == "__main__":
    main()
