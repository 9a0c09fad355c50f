"""``taskforge health``: print the one health report (:mod:`taskforge.health`) and exit 0
(healthy or degraded) or 1 (unreachable; with ``--strict``, any warning)."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import anyio
import typer
from rich.markup import escape
from rich.table import Table

from taskforge.cli.app import JsonOut, QueueFilter, RedisUrl, cli
from taskforge.cli.output import console, print_json
from taskforge.cli.session import bad_url, settings_for
from taskforge.health import health_check_once
from taskforge.job import PRIORITY_ORDER
from taskforge.protocol.brokers import AsyncBroker


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
    settings = settings_for(redis_url)
    try:
        broker = AsyncBroker(settings)
    except ValueError as exc:
        raise bad_url(settings, exc) from None
    # A process of its own: a memory:// server here holds nothing of any worker's.
    check = functools.partial(health_check_once, broker, queues=queue, separate_process=True)
    report = anyio.run(check)
    if as_json:
        print_json(report)
    else:
        _print_health(report)
    if report["status"] == "unhealthy" or (strict and report["status"] != "healthy"):
        raise typer.Exit(1)


def _print_health(report: dict[str, Any]) -> None:
    out = console()
    colour = {"healthy": "green", "degraded": "yellow"}.get(report["status"], "red")
    out.print(f"[bold {colour}]{report['status']}[/]")
    if not report.get("connected"):
        out.print(escape(str(report.get("error", "Redis did not answer"))))
        return
    for key in ("latency_ms", "version", "used_memory", "connected_clients", "uptime_seconds",
                "workers"):  # fmt: skip
        out.print(f"{key:<18} {report.get(key)}")
    if report["queues"]:
        table = Table("queue", *(p.value for p in PRIORITY_ORDER), "scheduled", "in flight", "dead")
        columns = ("high", "normal", "low", "scheduled", "inflight", "dead")
        for q, d in report["queues"].items():
            table.add_row(q, *(str(d.get(k, 0)) for k in columns))
        out.print(table)
    for w in report["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(w)}")


__all__ = ["health"]
