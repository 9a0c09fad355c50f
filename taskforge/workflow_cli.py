"""``taskforge workflow show ID`` and ``taskforge workflow cancel ID``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

import typer

from taskforge.client import Client
from taskforge.deadletters import DeadSelection
from taskforge.errors import BrokerError, ConfigurationError, WorkflowNotFoundError
from taskforge.settings import Settings
from taskforge.workflow import WorkflowClient, render_tree
from taskforge.workflow.graph import parse_member_id

workflow_cli = typer.Typer(
    help="Workflows (chain, group, chord): show the tree with statuses, cancel.",
    no_args_is_help=True,
)

RedisUrl = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis URL (default: $REDIS_URL)", show_default=False),
]
WorkflowId = Annotated[str, typer.Argument(help="the workflow id (handle.id)")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _workflows(redis_url: str | None) -> Iterator[WorkflowClient]:
    try:
        settings = Settings.from_env(redis_url=redis_url)
    except ConfigurationError as exc:
        raise _fail(str(exc), 2) from None
    client = Client(settings)
    try:
        yield WorkflowClient(client)
    except (BrokerError, WorkflowNotFoundError) as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()


@workflow_cli.command("show")
def show(
    workflow_id: WorkflowId,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Draw the workflow's tree with each member's status (and the failed member's error)."""
    with _workflows(redis_url) as workflows:
        info = workflows.handle(workflow_id).info()
    if as_json:
        typer.echo(json.dumps(asdict(info), indent=2, default=str))
    else:
        typer.echo(render_tree(info))


@workflow_cli.command("cancel")
def cancel(workflow_id: WorkflowId, redis_url: RedisUrl = None) -> None:
    """Cancel the whole workflow: waiting steps never start, running ones are asked to stop."""
    with _workflows(redis_url) as workflows:
        status = workflows.handle(workflow_id).cancel()
    typer.echo(f"workflow {workflow_id}: {status.value}")


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
