"""Workflow state in Redis: its keys and operations, as request generators the brokers drive.

A workflow's keys share the hash tag ``{wf:<id>}`` (one slot, whatever its members' queues);
each queue has an outbox (``taskforge:{queue}:wf_outbox``) where a member's finish script notes
"advance my workflow", in the member's own slot; :mod:`taskforge.workflow.advance` runs it.
The README's "Workflows: chain, group, chord" tells the whole round, and its "Redis data model"
lists the keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskforge.driver.requests import Arg, Batch, Command, Op, ScriptCall
from taskforge.protocol.keys import QueueKeys
from taskforge.settings import Settings
from taskforge.workflow.graph import parse_member_id

#: Pub/sub channel of workflow transitions (``started``, ``step_succeeded``, ``succeeded``,
#: ``failed``, ``cancelled``).
WORKFLOW_EVENTS = "workflow:events"


@dataclass(frozen=True, slots=True)
class WorkflowKeys:
    """The keys of one workflow (``taskforge:{wf:<id>}:...``)."""

    prefix: str
    workflow_id: str

    @property
    def base(self) -> str:
        """The common part, hash tag included."""
        return f"{self.prefix}:{{wf:{self.workflow_id}}}"

    @property
    def all(self) -> list[str]:
        """meta, links, calls, state, wait, results, done: the order the scripts expect."""
        b = self.base
        return [
            f"{b}:{name}" for name in ("meta", "links", "calls", "state", "wait", "results")
        ] + [f"{b}:done"]


def outbox(prefix: str, queue: str) -> str:
    """The outbox of ``queue``: member job id -> when its outcome was written (ms)."""
    return QueueKeys(prefix, queue).base + ":wf_outbox"


@dataclass(frozen=True, slots=True)
class ReadyNode:
    """A node an advance made ready: enqueue ``call`` with ``leading`` in front of its args."""

    index: int
    call: dict[str, Any]
    leading: list[Any]


@dataclass(frozen=True, slots=True)
class MemberOutcome:
    """A member job's final outcome, as the advance records it."""

    job_id: str
    node: int
    status: str
    result_json: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class WorkflowState:
    """A read of a workflow: its meta fields, each node's state, and its values."""

    workflow_id: str
    meta: dict[str, str]
    states: dict[int, str]
    links: dict[int, dict[str, Any]]
    calls: dict[int, dict[str, Any]]
    results: dict[int, str]


class WorkflowOps:
    """Workflow operations as generators of broker requests."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def keys(self, workflow_id: str) -> WorkflowKeys:
        """The keys of one workflow."""
        return WorkflowKeys(self.settings.prefix, workflow_id)

    def create(
        self,
        workflow_id: str,
        tree: dict[str, Any],
        output: str,
        main_count: int,
        nodes: Sequence[tuple[str, str, str, int]],
    ) -> Op[tuple[bool, list[int]]]:
        """Write the structure once; ``nodes`` are (links, call, state, wait count) JSON rows.

        Returns (created, nodes still ready): for an existing id, the ready ones to enqueue again.
        """
        k = self.keys(workflow_id).all
        args: list[Arg] = [WORKFLOW_EVENTS, workflow_id, json.dumps(tree), output, main_count]
        for row in nodes:
            args.extend(row)
        raw = yield ScriptCall("wf_create", k[:5], args)
        return raw[0] == "new", [int(x) for x in raw[1:]]

    def advance(self, workflow_id: str, outcomes: Sequence[MemberOutcome]) -> Op[list[ReadyNode]]:
        """Record members' outcomes; returns the nodes to enqueue (the same again on a replay)."""
        args: list[Arg] = [WORKFLOW_EVENTS, workflow_id, self.settings.result_ttl_s]
        for o in outcomes:
            args += [o.node, o.status, o.result_json, o.error]
        raw = yield ScriptCall("wf_advance", self.keys(workflow_id).all, args)
        return [
            ReadyNode(int(raw[i]), json.loads(raw[i + 1]), json.loads(raw[i + 2]))
            for i in range(0, len(raw), 3)
        ]

    def cancel(self, workflow_id: str) -> Op[tuple[str, list[tuple[int, str]]]]:
        """Cancel a running workflow; returns (outcome, enqueued (node, queue) to cancel)."""
        meta, links, calls, state, wait, results, done = self.keys(workflow_id).all
        keys = [meta, links, state, done, calls, wait, results]
        args: list[Arg] = [WORKFLOW_EVENTS, workflow_id, self.settings.result_ttl_s]
        raw = yield ScriptCall("wf_cancel", keys, args)
        return str(raw[0]), [(int(raw[i]), str(raw[i + 1])) for i in range(1, len(raw), 2)]

    def read(self, workflow_id: str, *, with_calls: bool = False) -> Op[WorkflowState | None]:
        """Read a workflow's state (None when it does not exist or expired)."""
        meta, links, calls, state, _, results, _ = self.keys(workflow_id).all
        cmds = [Command(("HGETALL", key)) for key in (meta, state, links, results)]
        if with_calls:
            cmds.append(Command(("HGETALL", calls)))
        raw = yield Batch(cmds)
        if not raw[0]:
            return None
        return WorkflowState(
            workflow_id,
            dict(raw[0]),
            {int(n): s for n, s in raw[1].items()},
            {int(n): json.loads(v) for n, v in raw[2].items()},
            {int(n): json.loads(v) for n, v in raw[4].items()} if with_calls else {},
            {int(n): v for n, v in raw[3].items()},
        )

    def status(self, workflow_id: str) -> Op[str | None]:
        """The workflow's status (None: no such workflow)."""
        raw = yield Command(("HGET", self.keys(workflow_id).all[0], "status"))
        return None if raw is None else str(raw)

    def wait_done(self, workflow_id: str, timeout_s: float) -> Op[bool]:
        """Block until the workflow's done marker appears (True) or the timeout (False)."""
        done = self.keys(workflow_id).all[6]
        raw = yield Command(("BLMOVE", done, done, "LEFT", "RIGHT", timeout_s))
        return raw is not None

    def due_outbox(self, queue: str, min_age_ms: int, limit: int) -> Op[list[MemberOutcome]]:
        """Outbox entries of ``queue`` older than ``min_age_ms``, with their members' outcomes."""
        keys = [
            outbox(self.settings.prefix, queue),
            QueueKeys(self.settings.prefix, queue).job_prefix,
        ]
        raw = yield ScriptCall("wf_outbox", keys, [min_age_ms, limit])
        out = []
        for i in range(0, len(raw), 4):
            parsed = parse_member_id(raw[i])
            node = -1 if parsed is None else parsed[1]  # not a member: the caller just clears it
            out.append(MemberOutcome(raw[i], node, raw[i + 1], raw[i + 2], raw[i + 3]))
        return out

    def clear_outbox(self, queue: str, job_ids: Sequence[str]) -> Op[None]:
        """Drop outbox entries whose advance is done."""
        if job_ids:
            yield Command(("ZREM", outbox(self.settings.prefix, queue), *job_ids))


__all__ = [
    "WORKFLOW_EVENTS",
    "MemberOutcome",
    "ReadyNode",
    "WorkflowKeys",
    "WorkflowOps",
    "WorkflowState",
    "outbox",
]
