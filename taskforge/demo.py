"""``taskforge demo``: the whole job lifecycle on the embedded memory:// server, in one process."""

from __future__ import annotations

import json
import logging

import anyio
import typer

from taskforge.app import Taskforge
from taskforge.job import JobPriority, JobStatus
from taskforge.protocol.brokers import AsyncBroker
from taskforge.retry import Retry
from taskforge.settings import Settings
from taskforge.worker import Worker

app = Taskforge(Settings(redis_url="memory://demo", prefix="demo"))
ran: list[str] = []
_flaky_calls: dict[str, int] = {}


@app.task(name="report.build")
async def build_report(name: str) -> str:
    """An async task."""
    ran.append(name)
    await anyio.sleep(0.01)
    return f"report {name} ready"


@app.task(name="image.resize")
def resize(name: str, width: int) -> dict[str, int | str]:
    """A sync task (runs in a worker thread)."""
    ran.append(name)
    return {"image": name, "width": width}


@app.task(name="email.send", max_retries=3)
async def send_email(to: str) -> str:
    """Fails on its first attempt, asks for a quick retry, then succeeds."""
    _flaky_calls[to] = _flaky_calls.get(to, 0) + 1
    ran.append(f"email {to} (attempt {_flaky_calls[to]})")
    if _flaky_calls[to] == 1:
        raise Retry(countdown_s=0.2, reason="smtp busy")
    return f"sent to {to}"


@app.task(name="data.cleanup", max_retries=1, retry_backoff=0.1)
def cleanup(kind: str) -> None:
    """Always fails: retried once, then dead-lettered."""
    ran.append(f"cleanup {kind}")
    raise RuntimeError(f"disk full while cleaning {kind}")


async def run_demo(per_priority: int = 3) -> None:
    """Enqueue a mix of jobs, run one worker until the queue drains, print what happened."""
    logging.basicConfig(level=logging.ERROR)
    events: list[dict[str, object]] = []
    listener = AsyncBroker(app.settings)
    subscribed = anyio.Event()

    async def listen() -> None:
        async for _, data in listener.subscribe(app.settings.events_channel, ready=subscribed):
            event = json.loads(data)
            events.append(event)
            err = f"  ({event['error']})" if event.get("error") else ""
            typer.echo(f"  event  {event['status']:<10} {event['task']:<13} "
                       f"attempt {event['attempt']}{err}")  # fmt: skip

    typer.echo("taskforge demo: embedded Redis (memory://), one worker, concurrency 1\n")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        await subscribed.wait()
        typer.echo("enqueue: LOW first, then NORMAL, then HIGH - HIGH still runs first")
        for i in range(per_priority):
            await resize.options(priority=JobPriority.LOW).adelay(f"low-{i}.png", 640)
        for i in range(per_priority):
            await build_report.adelay(f"normal-{i}")
        for i in range(per_priority):
            await build_report.options(priority="high").adelay(f"high-{i}")
        email = await send_email.adelay("ops@example.com")
        doomed = await cleanup.adelay("old_logs")
        typer.echo("")
        worker = Worker(app.settings, app.registry, concurrency=1, burst=True, block_s=0.5)
        stats = await worker.run()
        await anyio.sleep(0.05)  # let the last events arrive before the listener stops
        tg.cancel_scope.cancel()
    await _summary(email.id, doomed.id, stats.succeeded, len(events))
    await listener.aclose()


async def _summary(email_id: str, doomed_id: str, succeeded: int, n_events: int) -> None:
    typer.echo("\nrun order: " + ", ".join(ran))
    mail = await app.handle(email_id).ainfo()
    typer.echo(f"retry:  email.send {mail.status.value} after {mail.attempts} attempts "
               f"-> {mail.result!r}")  # fmt: skip
    dead = await app.handle(doomed_id).ainfo()
    assert dead.status is JobStatus.DEAD
    typer.echo(f"dead letter: data.cleanup {dead.status.value} after {dead.attempts} attempts: "
               f"{dead.error_type}: {dead.error}")  # fmt: skip
    typer.echo(f"\n{succeeded} jobs succeeded, 1 dead-lettered, {n_events} events on job:updates.")
    typer.echo("Next: point REDIS_URL at a real Redis and run `taskforge worker yourmodule`.")


__all__ = ["app", "build_report", "cleanup", "resize", "run_demo", "send_email"]
