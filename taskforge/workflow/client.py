"""Sending workflows and following them: the producer side of chain, group and chord.

``.delay()`` compiles the shape (every check happens here, before anything is written), writes
the structure once under the workflow's hash tag, then enqueues the first steps with their
deterministic ids. Workers advance it (see :mod:`taskforge.workflow.advance`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from taskforge.call import Call
from taskforge.canvas import Canvas
from taskforge.client import Client, control_channel
from taskforge.driver.requests import Batch, Command, Op
from taskforge.durations import when_to_delay
from taskforge.errors import ResultTimeoutError, WorkflowFailedError, WorkflowNotFoundError
from taskforge.job import new_job_id
from taskforge.protocol.ops import Ops
from taskforge.protocol.records import STATUS_OF_LETTER
from taskforge.workflow.graph import (
    MAX_WORKFLOW_MEMBERS,
    Graph,
    check_workflow_id,
    compile_workflow,
    member_call,
    member_id,
    node_rows,
)
from taskforge.workflow.ops import WORKFLOW_EVENTS, WorkflowOps, WorkflowState


class WorkflowStatus(StrEnum):
    """Where a workflow is: ``running`` until every step succeeded, a member died, or a cancel."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class WorkflowMember:
    """One member: its job id, task, queue, role (``main``, ``callback``, ``errback``) and status.

    ``status`` is the job's (``queued``, ``active``, ``succeeded``, ``dead``, ...), or
    ``pending`` while it waits for earlier steps.
    """

    node: int
    job_id: str
    task: str
    queue: str
    role: str
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A read of a workflow: status, each member, the failed member and its error."""

    id: str
    status: WorkflowStatus
    members: list[WorkflowMember]
    tree: dict[str, Any]
    failed_member: str | None = None
    error: str | None = None


class WorkflowClient:
    """Producer side of workflows over one :class:`~taskforge.client.Client`."""

    def __init__(self, client: Client):
        self.client = client
        self.ops = WorkflowOps(client.settings)

    # ---------------------------------------------------------------- sending

    def submit(
        self,
        canvas: Canvas,
        *,
        workflow_id: str | None = None,
        when: datetime | timedelta | float | None = None,
    ) -> WorkflowHandle:
        """Send a workflow (see :meth:`Canvas.delay`)."""
        wid, graph, rows, roots = self._prepare(canvas, workflow_id, when)
        created, ready = self.client.broker.run(self._create(wid, graph, rows))
        calls = _to_enqueue(roots, created, ready)
        if calls:
            self.client.submit(calls)
        return WorkflowHandle(self, wid, created=created)

    async def asubmit(
        self,
        canvas: Canvas,
        *,
        workflow_id: str | None = None,
        when: datetime | timedelta | float | None = None,
    ) -> WorkflowHandle:
        """Async :meth:`submit`."""
        wid, graph, rows, roots = self._prepare(canvas, workflow_id, when)
        created, ready = await self.client.abroker.run(self._create(wid, graph, rows))
        calls = _to_enqueue(roots, created, ready)
        if calls:
            await self.client.asubmit(calls)
        return WorkflowHandle(self, wid, created=created)

    def _prepare(
        self, canvas: Canvas, workflow_id: str | None, when: datetime | timedelta | float | None
    ) -> tuple[str, Graph, list[tuple[str, str, str, int]], dict[int, Call]]:
        # Everything that can fail on bad input happens here, before the first write.
        wid = check_workflow_id(workflow_id) if workflow_id is not None else new_job_id()
        graph = compile_workflow(canvas)
        rows = node_rows(graph)
        delay_s, run_at = (0.0, None) if when is None else when_to_delay(when)
        roots: dict[int, Call] = {}
        for node in graph.roots:
            call = member_call(wid, node.index, json.loads(rows[node.index][1]), [])
            roots[node.index] = replace(call, delay_s=delay_s, run_at=run_at)
            self.client.encode(roots[node.index])  # raises on what cannot be sent
        return wid, graph, rows, roots

    def _create(
        self, wid: str, graph: Graph, rows: list[tuple[str, str, str, int]]
    ) -> Op[tuple[bool, list[int]]]:
        return self.ops.create(wid, graph.tree, graph.output, graph.main_count, rows)

    # ---------------------------------------------------------------- reading

    def handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an existing workflow, from its id (nothing is read yet)."""
        return WorkflowHandle(self, workflow_id)

    def info_op(self, workflow_id: str) -> Op[WorkflowInfo]:
        """Read a workflow and its members' live job statuses."""
        state = yield from self._read(workflow_id, with_calls=True)
        # Enqueued members: their job records say where they are (queued, active, retrying...).
        live = [n for n, s in state.states.items() if s == "ready"]
        statuses: dict[int, str] = {}
        if live:
            keys = Ops(self.client.settings).keys
            records = [keys(state.links[n]["q"]).job(member_id(workflow_id, n)) for n in live]
            raw = yield Batch([Command(("HGET", key, "s")) for key in records])
            for n, letter in zip(live, raw, strict=True):
                status = STATUS_OF_LETTER.get(letter or "")
                statuses[n] = status.value if status else "ready"
        return _info(state, statuses)

    def _read(
        self, workflow_id: str, *, with_calls: bool = False
    ) -> Generator[Any, Any, WorkflowState]:
        state = yield from self.ops.read(workflow_id, with_calls=with_calls)
        if state is None:
            raise WorkflowNotFoundError(
                f"no workflow {workflow_id!r} (never sent, or expired after the result TTL)"
            )
        return state

    def status_op(self, workflow_id: str) -> Op[str]:
        """The workflow's status. Raises WorkflowNotFoundError."""
        status = yield from self.ops.status(workflow_id)
        if status is None:
            raise WorkflowNotFoundError(f"no workflow {workflow_id!r} (never sent, or expired)")
        return status

    def value_op(self, workflow_id: str, timeout_s: float | None, *, each: bool) -> Op[Any]:
        """Wait for the workflow to finish (blocking on Redis, no polling); its value, or the
        list of its top-level members' values when ``each``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = yield from self.ops.status(workflow_id)
            if status is None:
                raise WorkflowNotFoundError(f"no workflow {workflow_id!r} (never sent, or expired)")
            if status != WorkflowStatus.RUNNING:
                break
            yield from self.ops.wait_done(workflow_id, self._block_s(deadline, workflow_id))
        state = yield from self._read(workflow_id)
        meta = state.meta
        if meta["status"] != WorkflowStatus.SUCCEEDED:
            raise WorkflowFailedError(
                workflow_id,
                meta["status"],
                meta.get("failed", ""),
                *_split_error(meta.get("error")),
            )
        tree = json.loads(meta["tree"])
        if each:
            return [_value(t, state.results) for t in _top_members(tree)]
        return _fill(meta["output"], state.results)

    def _block_s(self, deadline: float | None, workflow_id: str) -> float:
        cap_s = max(0.1, self.client.settings.socket_timeout_s * 0.8)
        if deadline is None:
            return cap_s
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise ResultTimeoutError(f"workflow {workflow_id} did not finish in time")
        return max(0.01, min(cap_s, left_s))

    def cancel_op(self, workflow_id: str) -> Op[WorkflowStatus]:
        """Cancel the workflow as a whole: steps not started never start, enqueued ones are
        cancelled (running ones asked to stop). Returns the status it ended with."""
        outcome, enqueued = yield from self.ops.cancel(workflow_id)
        if outcome == "missing":
            raise WorkflowNotFoundError(f"no workflow {workflow_id!r} (never sent, or expired)")
        queue_ops = Ops(self.client.settings)
        channel = control_channel(self.client.settings)
        for node, queue in enqueued:
            yield from queue_ops.cancel(queue, member_id(workflow_id, node), channel)
        return WorkflowStatus(outcome)


def _to_enqueue(roots: dict[int, Call], created: bool, ready: list[int]) -> list[Call]:
    # A repeated delay (same workflow id) enqueues again only the roots still waiting for their
    # first enqueue; their ids are deterministic, so the ones that made it write nothing.
    if created:
        return list(roots.values())
    return [roots[n] for n in ready if n in roots]


_NODE = re.compile(r"@(\d+)@")


def _fill(template: str, results: dict[int, str]) -> Any:
    return json.loads(_NODE.sub(lambda m: results.get(int(m.group(1))) or "null", template))


def _output(tree: dict[str, Any]) -> str:
    kind = tree["type"]
    if kind == "call":
        return f"@{tree['node']}@"
    if kind == "chain":
        return _output(tree["steps"][-1])
    if kind == "group":
        return "[" + ",".join(_output(t) for t in tree["members"]) + "]"
    return _output(tree["body"])


def _value(tree: dict[str, Any], results: dict[int, str]) -> Any:
    return _fill(_output(tree), results)


def _top_members(tree: dict[str, Any]) -> list[dict[str, Any]]:
    kind = tree["type"]
    if kind == "chain":
        return list(tree["steps"])
    if kind == "group":
        return list(tree["members"])
    if kind == "chord":
        return list(tree["header"]["members"])
    return [tree]


def _split_error(text: str | None) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    kind, sep, message = text.partition(": ")
    return (kind, message) if sep else (None, text)


def _info(state: WorkflowState, live: dict[int, str]) -> WorkflowInfo:
    members = []
    for n in sorted(state.states):
        st = live.get(n, state.states[n])
        link, call = state.links[n], state.calls.get(n, {})
        error = state.results.get(n) if st in ("dead", "cancelled") else None
        members.append(
            WorkflowMember(
                n,
                member_id(state.workflow_id, n),
                call.get("t", "?"),
                link["q"],
                link["k"],
                st,
                error,
            )
        )
    meta = state.meta
    return WorkflowInfo(
        state.workflow_id,
        WorkflowStatus(meta["status"]),
        members,
        json.loads(meta["tree"]),
        meta.get("failed") or None,
        meta.get("error") or None,
    )


def render_tree(info: WorkflowInfo) -> str:
    """The workflow as a tree of its members with their statuses (``taskforge workflow show``)."""
    head = f"workflow {info.id}  {info.status.value}"
    if info.failed_member:
        head += f"  (failed at {info.failed_member}: {info.error})"
    lines = [head]
    members = {m.node: m for m in info.members}
    _draw(info.tree, members, "", lines, "")
    return "\n".join(lines)


def _draw(
    tree: dict[str, Any], members: dict[int, WorkflowMember], pad: str, lines: list[str], lead: str
) -> None:
    kind = tree["type"]
    if kind == "call":
        m = members[tree["node"]]
        text = f"[{m.node}] {m.task}  {m.status}"
        if m.error:
            text += f"  {m.error}"
        lines.append(lead + text)
    else:
        lines.append(lead + kind)
    children: list[tuple[str, dict[str, Any]]] = []
    if kind == "chain":
        children = [("", t) for t in tree["steps"]]
    elif kind == "group":
        children = [("", t) for t in tree["members"]]
    elif kind == "chord":
        children = [("header: ", tree["header"]), ("callback: ", tree["body"])]
    children += [("on_success: ", t) for t in tree.get("on_success", [])]
    children += [("on_failure: ", {"type": "call", "node": n}) for n in tree.get("on_failure", [])]
    for i, (label, child) in enumerate(children):
        last = i == len(children) - 1
        branch = "└── " if last else "├── "
        _draw(child, members, pad + ("    " if last else "│   "), lines, pad + branch + label)


class WorkflowHandle:
    """A reference to one workflow: ``h.id``, its value, its members' statuses, cancel.

    Look one up again with ``app.workflow(workflow_id)``. ``created`` is False when the
    ``.delay()`` found a workflow with the same id (the handle then points at that one).
    """

    __slots__ = ("_client", "created", "id")

    def __init__(self, client: WorkflowClient, workflow_id: str, *, created: bool = True):
        self._client = client
        self.id = workflow_id
        self.created = created

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r}, created={self.created})"

    def _run(self, op: Op[Any]) -> Any:
        return self._client.client.broker.run(op)

    async def _arun(self, op: Op[Any]) -> Any:
        return await self._client.client.abroker.run(op)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow (no polling) and return its value: a chain's last step's, a
        group's list, a chord's callback's. ``timeout`` in seconds (None: forever).

        Raises:
            ResultTimeoutError: not finished in time.
            WorkflowFailedError: a member died, or the workflow was cancelled.
            WorkflowNotFoundError: no such workflow (or it expired).
        """
        return self._run(self._client.value_op(self.id, timeout, each=False))

    async def aresult(self, timeout: float | None = None) -> Any:
        """Async :meth:`result`."""
        return await self._arun(self._client.value_op(self.id, timeout, each=False))

    def results(self, timeout: float | None = None) -> list[Any]:
        """Like :meth:`result`, but the value of each top-level member, in order: a chain's
        steps, a group's members, a chord's header members."""
        value: list[Any] = self._run(self._client.value_op(self.id, timeout, each=True))
        return value

    async def aresults(self, timeout: float | None = None) -> list[Any]:
        """Async :meth:`results`."""
        value: list[Any] = await self._arun(self._client.value_op(self.id, timeout, each=True))
        return value

    def info(self) -> WorkflowInfo:
        """Status, each member's status and the failed member's error."""
        info: WorkflowInfo = self._run(self._client.info_op(self.id))
        return info

    async def ainfo(self) -> WorkflowInfo:
        """Async :meth:`info`."""
        info: WorkflowInfo = await self._arun(self._client.info_op(self.id))
        return info

    def status(self) -> WorkflowStatus:
        """The workflow's status (one read). Raises WorkflowNotFoundError."""
        return WorkflowStatus(self._run(self._client.status_op(self.id)))

    async def astatus(self) -> WorkflowStatus:
        """Async :meth:`status`."""
        return WorkflowStatus(await self._arun(self._client.status_op(self.id)))

    def tree(self) -> str:
        """The members drawn as a tree with their statuses."""
        return render_tree(self.info())

    def cancel(self) -> WorkflowStatus:
        """Cancel the whole workflow; returns the status it has now (a finished one stays)."""
        status: WorkflowStatus = self._run(self._client.cancel_op(self.id))
        return status

    async def acancel(self) -> WorkflowStatus:
        """Async :meth:`cancel`."""
        status: WorkflowStatus = await self._arun(self._client.cancel_op(self.id))
        return status


__all__ = [
    "MAX_WORKFLOW_MEMBERS",
    "WORKFLOW_EVENTS",
    "WorkflowClient",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowMember",
    "WorkflowStatus",
    "render_tree",
]
