"""``taskforge queues``: every queue's depths and recent rates; ``queues show NAME`` pages its
waiting jobs; ``queues purge NAME`` empties it (one script, asks first)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from taskforge.admin import RATE_WINDOW_MIN
from taskforge.cli.app import JsonOut, QueueFilter, RedisUrl, cli
from taskforge.cli.output import console, fail, print_json, when
from taskforge.cli.session import open_admin
from taskforge.job import PRIORITY_ORDER
from taskforge.protocol.keys import check_queue_name

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
    with open_admin(redis_url) as admin:
        overview = admin.overview(queue, minutes=RATE_WINDOW_MIN)
    rows: list[dict[str, Any]] = [
        {**d.to_json(), "recent": overview.recent(d.queue)} for d in overview.depths
    ]
    if as_json:
        print_json(rows)
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
    console().print(table)


@queues_cli.command("show")
def queues_show(
    name: Annotated[str, typer.Argument(help="the queue")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="jobs per section")] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0, help="skip this many per section")] = 0,
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Waiting jobs of one queue, in the order they run: ready (per priority), then scheduled."""
    with open_admin(redis_url) as admin:
        page = admin.listing(name, offset=offset, limit=limit)
    if as_json:
        print_json(page.to_json())
        return
    d = page.depth
    totals = {**d.ready, "scheduled": d.scheduled}
    out = console()
    for section, jobs in page.sections.items():
        shown = f"{offset + 1}-{offset + len(jobs)}" if jobs else "none"
        out.print(f"[bold]{section}[/bold] ({totals[section]} waiting; showing {shown})")
        if not jobs:
            continue
        table = Table("id", "task", "status", "attempts", "runs at")
        for j in jobs:
            table.add_row(j.id, escape(j.task or "?"), j.status or "?", str(j.attempts),
                          when(j.at_ms))  # fmt: skip
        out.print(table)
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
    with open_admin(redis_url) as admin:
        (depth,) = admin.depths([check_queue_name(name)])
        waiting = depth.ready_total + depth.scheduled
        if waiting and not yes:
            ask = f"Delete the {waiting} waiting job(s) of queue {name!r} for good?"
            if not typer.confirm(ask, err=True):
                raise fail("aborted; nothing deleted")
        purged = admin.purge_queue(name)
    if as_json:
        print_json({"queue": name, "purged": purged.total, "ready": purged.ready,
                    "scheduled": purged.scheduled})  # fmt: skip
        return
    typer.echo(f"purged {purged.total} job(s) from queue {name}")


__all__ = ["queues", "queues_cli", "queues_purge", "queues_show"]
