"""``taskforge workers``: live and lost workers, from their heartbeats."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from taskforge.cli.app import JsonOut, RedisUrl, cli
from taskforge.cli.output import ago, console, print_json
from taskforge.cli.session import open_admin


@cli.command()
def workers(redis_url: RedisUrl = None, as_json: JsonOut = False) -> None:
    """Workers from their heartbeats: live ones, and lost ones (stopped beating without
    signing off: killed, or cut off from Redis), which are forgotten an hour later."""
    with open_admin(redis_url) as admin:
        found = admin.workers()
    if as_json:
        print_json([w.to_json() for w in found])
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
            ago(now - float(w.get("started", now))),
            ago(now - float(w.get("last_seen", now))) + " ago",
        )  # fmt: skip
    console().print(table)


__all__ = ["workers"]
