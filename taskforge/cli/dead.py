"""``taskforge dead``: list, show, requeue and purge dead-lettered jobs (by id, filters or
``--all``), on the dead-letter API of :class:`~taskforge.admin.Admin`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from taskforge.cli.app import JsonOut, QueueFilter, RedisUrl, TaskPattern, cli
from taskforge.cli.job import find_job, show_record
from taskforge.cli.output import ago, console, fail, print_json
from taskforge.cli.session import open_admin
from taskforge.deadletters import DEAD_BATCH, DeadFilter, DeadResult, DeadSelection, OnBatch
from taskforge.errors import ConfigurationError
from taskforge.job import JobStatus
from taskforge.workflow.graph import parse_member_id

dead_cli = typer.Typer(
    help="The dead-letter queue: list, show, requeue, purge.", no_args_is_help=True
)
cli.add_typer(dead_cli, name="dead")

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
    with open_admin(redis_url) as admin:
        found = admin.dead_list(queues=queue, flt=flt, limit=limit)
    if as_json:
        print_json([d.to_json() for d in found])
        return
    if not found:
        typer.echo("no dead jobs" + (" match" if flt.active else ""))
        return
    table = Table("id", "queue", "task", "dead for", "attempts", "error")
    for d in found:
        r = d.record
        attempts = str(r.attempts) if r else "-"
        table.add_row(d.id, d.queue, (r.task if r else None) or "?", ago(d.age_s), attempts,
                      escape(d.reason[:120]))  # fmt: skip
    console().print(table)
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
    with open_admin(redis_url) as admin:
        where, record = find_job(admin, job_id, queue)
    if record.status is not JobStatus.DEAD and not as_json:
        typer.echo(f"note: job {job_id} is not dead (status {record.status.value})", err=True)
    show_record(where, record, as_json=as_json)


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[OnBatch]:
    """A progress bar once a set takes more than one batch; yields the library's callback."""
    bar = Progress(console=console(stderr=True), transient=False)
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
    # DeadOps.select enforces the same rule; checked here first, before connecting, to name
    # the command's own options in a usage error (exit 2).
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
    with open_admin(redis_url) as admin, _progress("requeueing", as_json) as on_batch:
        chosen = admin.dead_select(ids=job_ids or (), flt=flt, every=every, queues=queue)
        result = admin.dead_requeue(chosen, batch=DEAD_BATCH, on_batch=on_batch)
    _report("requeued", result, as_json)
    warn_revived_members(chosen)
    if job_ids and result.total == 0:
        raise typer.Exit(1)


def _report(verb: str, result: DeadResult, as_json: bool) -> None:
    if as_json:
        print_json({verb: result.total, "skipped": result.skipped, "queues": result.done,
                    "not_found": result.not_found})  # fmt: skip
        return
    note = f" ({result.skipped} skipped: not dead or not found)" if result.skipped else ""
    where = ", ".join(f"{q}: {n}" for q, n in result.done.items() if n)
    typer.echo(f"{verb} {result.total} dead job(s)" + (f" [{where}]" if where else "") + note)
    for job_id in result.not_found:
        typer.echo(f"not found: {job_id}", err=True)


def warn_revived_members(chosen: DeadSelection) -> None:
    """Say on stderr that requeued workflow members do not resume their workflows: a member's
    death already ended its workflow ``failed`` (its later steps ``cancelled``), and a revived
    member's success changes neither."""
    members = sorted(
        {wid for ids in chosen.chosen.values() for i in ids if (wid := _workflow_of(i))}
    )
    if members:
        typer.echo(
            f"warning: {len(members)} workflow(s) had members among these jobs; a revived member "
            "runs alone and does not resume its failed workflow (its later steps stay "
            f"cancelled): {', '.join(members)}. Start the workflow again to rerun it.",
            err=True,
        )


def _workflow_of(job_id: str) -> str | None:
    parsed = parse_member_id(job_id)
    return None if parsed is None else parsed[0]


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
    with open_admin(redis_url) as admin:
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


__all__ = [
    "dead_cli",
    "dead_list",
    "dead_purge",
    "dead_requeue",
    "dead_show",
    "warn_revived_members",
]
