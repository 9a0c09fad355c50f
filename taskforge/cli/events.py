"""``taskforge events``: tail the job status events live, filtered by queue, status and task."""

from __future__ import annotations

import fnmatch
import json
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
import typer

from taskforge.cli.app import JsonOut, RedisUrl, TaskPattern, cli
from taskforge.cli.session import connect, settings_for
from taskforge.job import JobStatus
from taskforge.protocol.brokers import AsyncBroker
from taskforge.settings import Settings


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
    settings = settings_for(redis_url)
    with connect(redis_url) as broker:  # fail fast: subscribe() would retry forever
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


__all__ = ["events"]
