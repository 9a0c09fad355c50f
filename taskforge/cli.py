"""The ``taskforge`` command line (typer)."""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import re
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
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from taskforge import demo as demo_module
from taskforge import loader
from taskforge.app import Taskforge
from taskforge.broker import AsyncBroker, SyncBroker
from taskforge.client import Client
from taskforge.errors import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    EnqueueError,
    TaskforgeError,
)
from taskforge.health import health_check
from taskforge.job import PRIORITY_ORDER, JobRecord, JobStatus
from taskforge.keys import check_queue_name
from taskforge.scheduler import cron_status
from taskforge.settings import Settings
from taskforge.task import Call, TaskOptions, coerce_priority, when_to_delay
from taskforge.worker import Worker
from taskforge.workflow_cli import workflow_cli

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
        )
    except ValueError as exc:  # a bad queue name or Redis URL (ConfigurationError included)
        raise fail(f"cannot start worker on {settings.masked_url()}: {exc}", 2) from None
    try:
        anyio.run(_run_worker, w)
    except BrokerConnectionError as exc:
        raise fail(f"cannot start worker: {exc}") from None
    except OSError as exc:
        if metrics_port is None:
            raise
        raise fail(f"cannot start worker: metrics port {metrics_port}: {exc}") from None


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

#: Minutes of per-minute outcome counters that ``queues`` averages over.
RATE_WINDOW_MIN = 5
#: Dead jobs moved or deleted per Redis call: each call stays short, so Redis is never blocked.
DEAD_BATCH = 500


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


def _queues(broker: SyncBroker, wanted: Sequence[str] | None) -> list[str]:
    if wanted:
        try:
            return [check_queue_name(q) for q in dict.fromkeys(wanted)]
        except ConfigurationError as exc:
            raise fail(str(exc), 2) from None
    known = broker.run(broker.ops.known_queues())
    return known or ["default"]


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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``30s``, ``15m``, ``2h`` or ``7d``."""
    m = _DURATION.match(text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a duration; use e.g. 30s, 15m, 2h, 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


# --------------------------------------------------------------------------- queues


@cli.command()
def queues(
    queue: QueueFilter = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Queue depths (ready per priority, scheduled, in flight, dead) and recent jobs/min."""
    with _connect(redis_url) as broker:
        names = _queues(broker, queue)
        now_min = broker.run(broker.ops.server_time_ms()) // 60_000
        minutes = range(now_min - RATE_WINDOW_MIN + 1, now_min + 1)
        rows = [_queue_row(broker, q, minutes) for q in names]
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


def _queue_row(broker: SyncBroker, queue: str, minutes: range) -> dict[str, Any]:
    c = broker.run(broker.ops.counts(queue))
    recent = broker.run(broker.ops.recent_outcomes(queue, list(minutes)))
    done, failed, dead = (recent.get(k, 0) for k in ("done", "failed", "dead"))
    return {
        "queue": queue,
        "ready": {p.value: n for p, n in c.ready.items()},
        "ready_total": c.ready_total,
        "scheduled": c.scheduled,
        "inflight": c.inflight,
        "dead": c.dead,
        "recent": {
            "window_minutes": len(minutes),
            "done": done,
            "failed": failed,
            "dead": dead,
            "done_per_min": round(done / len(minutes), 2),
            "failed_per_min": round(failed / len(minutes), 2),
        },
    }


# --------------------------------------------------------------------------- one job


@cli.command()
def job(
    job_id: Annotated[str, typer.Argument(help="the job id")],
    queue: QueueFilter = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """A job's record: status, attempts, timestamps, error and traceback, result."""
    with _connect(redis_url) as broker:
        found = _find_job(broker, job_id, queue)
    _show_record(*found, as_json=as_json)


def _find_job(
    broker: SyncBroker, job_id: str, wanted: Sequence[str] | None
) -> tuple[str, JobRecord]:
    names = _queues(broker, wanted)
    where = broker.run(broker.ops.locate(job_id, names))
    record = broker.run(broker.ops.record(where, job_id)) if where else None
    if where is None or record is None:
        raise fail(f"no job {job_id!r} in queue(s) {', '.join(names)} (never enqueued, or expired)")
    return where, record


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


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Which dead jobs a ``dead`` command acts on."""

    task: str | None = None
    error: str | None = None
    older_than_s: float | None = None
    newer_than_s: float | None = None

    @classmethod
    def of(
        cls, task: str | None, error: str | None, older: str | None, newer: str | None
    ) -> DeadFilter:
        """Build from the command-line options (durations parsed; bad ones are usage errors)."""
        return cls(
            task,
            error.lower() if error else None,
            parse_duration(older) if older else None,
            parse_duration(newer) if newer else None,
        )

    @property
    def active(self) -> bool:
        """True when any filter is set."""
        return any(v is not None for v in (self.task, self.error, self.older_than_s,
                                           self.newer_than_s))  # fmt: skip

    @property
    def needs_records(self) -> bool:
        """True when matching must read job records (task or error filters)."""
        return self.task is not None or self.error is not None

    def matches(self, record: JobRecord | None, age_s: float) -> bool:
        """Whether a dead job with this record, dead for ``age_s`` seconds, is selected."""
        if self.older_than_s is not None and age_s < self.older_than_s:
            return False
        if self.newer_than_s is not None and age_s > self.newer_than_s:
            return False
        if self.task is not None and not fnmatch.fnmatchcase(
            (record.task if record else None) or "", self.task
        ):
            return False
        if self.error is not None:
            text = f"{record.error_type}: {record.error}" if record else ""
            return self.error in text.lower()
        return True


@dataclass(frozen=True, slots=True)
class DeadJob:
    """One dead-lettered job as the ``dead`` commands see it."""

    queue: str
    id: str
    dead_ms: int
    age_s: float
    record: JobRecord | None

    def to_json(self) -> dict[str, Any]:
        """The ``dead list --json`` shape."""
        r = self.record
        return {
            "id": self.id,
            "queue": self.queue,
            "task": r.task if r else None,
            "dead_at": _when(self.dead_ms),
            "age_s": round(self.age_s, 3),
            "attempts": r.attempts if r else None,
            "error_type": r.error_type if r else None,
            "error": r.error if r else None,
        }


def iter_dead(
    broker: SyncBroker, queues: Sequence[str], flt: DeadFilter, *, records: bool = True
) -> Iterator[DeadJob]:
    """Dead jobs of ``queues`` matching ``flt``, oldest first, read a page at a time."""
    ops = broker.ops
    now_ms = broker.run(ops.server_time_ms())
    read = records or flt.needs_records
    for q in queues:
        start = 0
        while page := broker.run(ops.dead_ids(q, start, start + DEAD_BATCH - 1)):
            ids = [job_id for job_id, _ in page]
            recs = broker.run(ops.records(q, ids)) if read else [None] * len(ids)
            for (job_id, dead_ms), rec in zip(page, recs, strict=True):
                age_s = (now_ms - dead_ms) / 1000
                if flt.matches(rec, age_s):
                    yield DeadJob(q, job_id, dead_ms, age_s, rec)
            start += DEAD_BATCH


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
    flt = DeadFilter.of(task, error, older_than, newer_than)
    with _connect(redis_url) as broker:
        found: list[DeadJob] = []
        for d in iter_dead(broker, _queues(broker, queue), flt):
            found.append(d)
            if limit and len(found) >= limit:
                break
    if as_json:
        _print_json([d.to_json() for d in found])
        return
    if not found:
        typer.echo("no dead jobs" + (" match" if flt.active else ""))
        return
    table = Table("id", "queue", "task", "dead for", "attempts", "error")
    for d in found:
        r = d.record
        err = f"{r.error_type}: {r.error}" if r and r.error else "-"
        attempts = str(r.attempts) if r else "-"
        table.add_row(d.id, d.queue, (r.task if r else None) or "?", _ago(d.age_s), attempts,
                      escape(err.splitlines()[0][:120] if err else "-"))  # fmt: skip
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
    with _connect(redis_url) as broker:
        where, record = _find_job(broker, job_id, queue)
    if record.status is not JobStatus.DEAD and not as_json:
        typer.echo(f"note: job {job_id} is not dead (status {record.status.value})", err=True)
    _show_record(where, record, as_json=as_json)


def _select(
    broker: SyncBroker,
    ids: list[str] | None,
    queue: list[str] | None,
    flt: DeadFilter,
    every: bool,
) -> tuple[dict[str, list[str]], list[str]]:
    """The dead jobs a requeue/purge acts on: ``({queue: [ids]}, ids not found)``."""
    if ids and (every or flt.active):
        raise typer.BadParameter("give job ids, or filters/--all, not both")
    if not ids and not every and not flt.active:
        raise typer.BadParameter(
            "name the jobs: job ids, a filter (--task/--error/--older-than/--newer-than), or --all"
        )
    chosen: dict[str, list[str]] = {}
    missing: list[str] = []
    if ids:
        names = _queues(broker, queue)
        for job_id in dict.fromkeys(ids):
            where = broker.run(broker.ops.locate(job_id, names))
            if where is None:
                missing.append(job_id)
            else:
                chosen.setdefault(where, []).append(job_id)
        return chosen, missing
    for d in iter_dead(broker, _queues(broker, queue), flt, records=False):
        chosen.setdefault(d.queue, []).append(d.id)
    return chosen, missing


def _in_batches(
    chosen: dict[str, list[str]], label: str, quiet: bool
) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(queue, batch)`` of at most DEAD_BATCH ids, with a progress bar for big sets."""
    total = sum(map(len, chosen.values()))
    show = not quiet and total > DEAD_BATCH
    with Progress(console=_console(stderr=True), disable=not show, transient=False) as bar:
        progress = bar.add_task(label, total=total)
        for queue, ids in chosen.items():
            for i in range(0, len(ids), DEAD_BATCH):
                batch = ids[i : i + DEAD_BATCH]
                yield queue, batch
                bar.advance(progress, len(batch))


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
    flt = DeadFilter.of(task, error, older_than, newer_than)
    with _connect(redis_url) as broker:
        chosen, missing = _select(broker, job_ids, queue, flt, every)
        moved: dict[str, int] = {}
        for q, batch in _in_batches(chosen, "requeueing", as_json):
            moved[q] = moved.get(q, 0) + broker.run(broker.ops.revive(q, batch))
    wanted = sum(map(len, chosen.values())) + len(missing)
    total = sum(moved.values())
    _report("requeued", total, wanted, moved, missing, as_json)
    if job_ids and total == 0:
        raise typer.Exit(1)


def _report(
    verb: str, done: int, wanted: int, per_queue: dict[str, int], missing: list[str], as_json: bool
) -> None:
    if as_json:
        _print_json({verb: done, "skipped": wanted - done, "queues": per_queue,
                     "not_found": missing})  # fmt: skip
        return
    skipped = wanted - done
    note = f" ({skipped} skipped: not dead or not found)" if skipped else ""
    where = ", ".join(f"{q}: {n}" for q, n in per_queue.items() if n)
    typer.echo(f"{verb} {done} dead job(s)" + (f" [{where}]" if where else "") + note)
    for job_id in missing:
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
    flt = DeadFilter.of(task, error, older_than, newer_than)
    with _connect(redis_url) as broker:
        chosen, missing = _select(broker, job_ids, queue, flt, every)
        count = sum(map(len, chosen.values()))
        if count and not yes:
            where = ", ".join(f"{q}: {len(ids)}" for q, ids in chosen.items())
            if not typer.confirm(f"Delete {count} dead job(s) for good [{where}]?", err=True):
                raise fail("aborted; nothing deleted")
        purged: dict[str, int] = {}
        for q, batch in _in_batches(chosen, "purging", as_json):
            # Only ids still dead: purging deletes the record, which must never hit a live job.
            still_dead = broker.run(broker.ops.dead_members(q, batch))
            purged[q] = purged.get(q, 0) + broker.run(broker.ops.purge_dead(q, still_dead))
    _report("purged", sum(purged.values()), count + len(missing), purged, missing, as_json)


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
    """Live workers, from their heartbeats (a worker vanishes once its heartbeat expires)."""
    with _connect(redis_url) as broker:
        live = broker.run(broker.ops.workers())
    if as_json:
        _print_json(live)
        return
    if not live:
        typer.echo("no live workers")
        return
    now = time.time()
    table = Table("id", "host", "pid", "queues", "conc", "running", "processed", "failed", "up",
                  "last seen")  # fmt: skip
    for w in live:
        running = f"{w.get('running', 0)}"
        if w.get("running_jobs"):
            running += " " + ",".join(w["running_jobs"][:3]) + (" ..." * (w["running"] > 3))
        table.add_row(
            str(w.get("id")), str(w.get("host")), str(w.get("pid")),
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

#: Every key of ``health --json``, present whatever the status (None when unknown).
HEALTH_KEYS = (
    "status", "connected", "latency_ms", "version", "used_memory", "connected_clients",
    "uptime_seconds", "workers", "queues", "warnings", "error",
)  # fmt: skip


async def _health(broker: AsyncBroker, queues: list[str] | None) -> dict[str, Any]:
    try:
        report = await health_check(broker, queues=queues)
        if report["connected"]:
            try:
                live = await broker.run(broker.ops.workers())
            except BrokerError as exc:
                report = {"status": "unhealthy", "connected": False, "error": str(exc)}
            else:
                report["workers"] = len(live)
                report["warnings"] += _backlog_warnings(report["queues"], len(live))
                if report["warnings"] and report["status"] == "healthy":
                    report["status"] = "degraded"
        # One shape for scripts, whatever happened.
        defaults: dict[str, Any] = {"queues": {}, "warnings": []}
        return {key: report.get(key, defaults.get(key)) for key in HEALTH_KEYS}
    finally:
        with anyio.CancelScope(shield=True):
            await broker.aclose()


def _backlog_warnings(depths: dict[str, dict[str, int]], live_workers: int) -> list[str]:
    ready = sum(d.get(p.value, 0) for d in depths.values() for p in PRIORITY_ORDER)
    if ready and not live_workers:
        return [f"{ready} job(s) ready but no live worker: start one with `taskforge worker`"]
    return []


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


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        cli()
    finally:
        logging.getLogger(__name__).debug("cli ran %.3fs", time.monotonic() - started)


if __name__ == "__main__":
    main()
