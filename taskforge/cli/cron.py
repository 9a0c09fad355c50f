"""``taskforge cron MODULES``: each periodic task's schedule, last claimed tick and next fire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from taskforge.admin import Admin
from taskforge.cli.app import JsonOut, RedisUrl, cli, load_app
from taskforge.cli.output import console, print_json
from taskforge.cli.session import connect


@cli.command("cron")
def cron_list(
    modules: Annotated[list[str], typer.Argument(help="modules that define tasks (pkg.mod[:app])")],
    redis_url: RedisUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Periodic tasks: cron expression, catch-up policy, last tick claimed, next fire time."""
    app = load_app(modules)
    with connect(redis_url) as broker:
        rows = Admin(broker.settings, broker=broker).cron(app.registry.periodics())
    if as_json:
        print_json([r.as_dict() for r in rows])
        return
    if not rows:
        typer.echo("no periodic tasks")
        return
    table = Table("name", "task", "queue", "cron", "timezone", "catch-up", "last tick", "next fire")
    for r in rows:
        d = r.as_dict()
        table.add_row(
            d["name"], d["task"], d["queue"], escape(d["cron"]), d["timezone"], d["catch_up"],
            _when(r.last_tick_ms), _when(r.next_fire_ms),
        )  # fmt: skip
    console().print(table)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = ["cron_list"]
