"""``taskforge job ID`` (a job's record, found in any queue by id alone) and
``taskforge job cancel ID``; the record view ``dead show`` uses too."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer
import typer.core
from rich.markup import escape
from rich.table import Table

from taskforge.admin import Admin
from taskforge.cli.app import JsonOut, QueueFilter, RedisUrl, cli
from taskforge.cli.output import console, fail, print_json, when
from taskforge.cli.session import open_admin
from taskforge.errors import ConfigurationError
from taskforge.job import JobRecord, JobStatus


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
    with open_admin(redis_url) as admin:
        found = find_job(admin, job_id, queue)
    show_record(*found, as_json=as_json)


@job_cli.command("cancel")
def job_cancel(
    job_id: Annotated[str, typer.Argument(help="the job id")],
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Cancel a job: a waiting one at once, a running one when its worker acts on the request."""
    with open_admin(redis_url) as admin:
        status = admin.cancel(job_id)
    if as_json:
        print_json({"id": job_id, "status": status.value})
    else:
        typer.echo(f"job {job_id}: {status.value}")
    if status in (JobStatus.SUCCEEDED, JobStatus.DEAD):
        raise typer.Exit(1)  # already over: nothing was cancelled


def find_job(admin: Admin, job_id: str, wanted: Sequence[str] | None) -> tuple[str, JobRecord]:
    """``(queue, record)`` of a job (the first ``-Q`` tried first); exit 1 when none holds it."""
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


def show_record(queue: str, r: JobRecord, *, as_json: bool) -> None:
    """A job record as JSON, or as a table with its error and traceback."""
    if as_json:
        print_json(record_json(queue, r))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in _record_rows(queue, r):
        table.add_row(name, escape(value))
    out = console()
    out.print(table)
    if r.traceback:
        out.print("\n[bold]traceback[/bold]")
        out.print(escape(r.traceback.rstrip()))


def _record_rows(queue: str, r: JobRecord) -> list[tuple[str, str]]:
    envelope = r.job
    rows: list[tuple[str, str]] = [
        ("id", r.id),
        ("status", r.status.value),
        ("task", r.task or "? (unreadable record)"),
        ("queue", queue),
        ("priority", envelope.priority.value if envelope else "-"),
        ("attempts", f"{r.attempts} (max retries {envelope.max_retries if envelope else '?'})"),
        ("deliveries", str(r.deliveries)),
        ("args", json.dumps(envelope.args) if envelope else "-"),
        ("kwargs", json.dumps(envelope.kwargs) if envelope else "-"),
        ("created", when(r.created_ms)),
        ("enqueued", when(r.enqueued_ms)),
        ("started", when(r.started_ms)),
        ("finished", when(r.finished_ms)),
        ("worker", r.worker or "-"),
    ]
    if r.status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
        rows.append(("runs at", when(r.run_at_ms)))
    if r.unreadable_fields:
        rows.append(("unreadable", f"{', '.join(r.unreadable_fields)} (shown as 0 or unknown)"))
    if r.error:
        rows.append(("error", f"{r.error_type or 'Error'}: {r.error}"))
    if r.status is JobStatus.SUCCEEDED:
        rows.append(("result", json.dumps(r.result)))
    return rows


__all__ = ["find_job", "job", "job_cancel", "job_cli", "record_json", "show_record"]


@cli.command("upgrade-records")
def upgrade_records(
    queue: QueueFilter = None,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Move job records the previous release wrote to the compact layout (stop the old
    workers first; safe to run again)."""
    with open_admin(redis_url) as admin:
        try:
            done = admin.upgrade_records(queue)
        except ConfigurationError as exc:  # signed records it cannot sign again: nothing moved
            raise fail(str(exc), 2) from None
    if as_json:
        print_json([{"queue": u.queue, "moved": u.moved, "skipped": u.skipped,
                     "changed": u.changed, "recovered": u.recovered} for u in done])  # fmt: skip
    else:
        for u in done:
            typer.echo(f"{u.queue}: {u.moved} moved, {u.skipped} already moved, "
                       f"{u.changed} changed while running (run it again)")  # fmt: skip
            if u.recovered:
                typer.echo(f"{u.queue}: {u.recovered} dead-lettered by a worker started before "
                           "the upgrade, whole again: `taskforge dead requeue`")  # fmt: skip
    if any(u.changed for u in done):
        raise typer.Exit(1)
