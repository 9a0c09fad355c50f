"""``taskforge enqueue TASK``: send a job by task name, with JSON arguments (nothing of the
task is imported; the worker must know it)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from taskforge.cli.app import JsonOut, RedisUrl, cli
from taskforge.cli.output import fail, print_json
from taskforge.cli.session import bad_url, settings_for
from taskforge.client import Client
from taskforge.errors import BrokerError, ConfigurationError, EnqueueError
from taskforge.task import Call, TaskOptions, coerce_priority, when_to_delay


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
    settings = settings_for(redis_url)
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
        raise bad_url(settings, exc) from None
    finally:
        client.close()
    if as_json:
        print_json({"id": handle.id, "queue": queue, "task": task_name, "status": status,
                    "created": handle.created})  # fmt: skip
        return
    what = "enqueued" if handle.created else "already exists:"
    typer.echo(f"{what} {handle.id} {task_name} queue={queue} priority={priority} status={status}")


__all__ = ["enqueue"]
