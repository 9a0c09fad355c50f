"""``taskforge workflow show ID`` and ``taskforge workflow cancel ID``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

import typer

from taskforge.cli.app import RedisUrl, cli
from taskforge.cli.output import fail, print_json
from taskforge.cli.session import settings_for
from taskforge.client import Client
from taskforge.errors import BrokerError, WorkflowNotFoundError
from taskforge.workflow import WorkflowClient, render_tree

workflow_cli = typer.Typer(
    help="Workflows (chain, group, chord): show the tree with statuses, cancel.",
    no_args_is_help=True,
)
cli.add_typer(workflow_cli, name="workflow")

WorkflowId = Annotated[str, typer.Argument(help="the workflow id (handle.id)")]


@contextmanager
def _workflows(redis_url: str | None) -> Iterator[WorkflowClient]:
    client = Client(settings_for(redis_url))
    try:
        yield WorkflowClient(client)
    except (BrokerError, WorkflowNotFoundError) as exc:
        raise fail(str(exc)) from None
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
        print_json(asdict(info))
    else:
        typer.echo(render_tree(info))


@workflow_cli.command("cancel")
def cancel(workflow_id: WorkflowId, redis_url: RedisUrl = None) -> None:
    """Cancel the whole workflow: waiting steps never start, running ones are asked to stop."""
    with _workflows(redis_url) as workflows:
        status = workflows.handle(workflow_id).cancel()
    typer.echo(f"workflow {workflow_id}: {status.value}")


__all__ = ["cancel", "show", "workflow_cli"]
