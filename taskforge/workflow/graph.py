"""A workflow's shape compiled into numbered nodes with dependencies. Pure: no Redis here.

Every call of a chain, group or chord (and every ``on_success``/``on_failure`` callback) becomes
one node, later one job with the deterministic id ``wf:<workflow id>:<node>``. A node waits for
its ``deps`` to succeed; what it receives first is a JSON template over their values
(``[@3@]`` is node 3's value; ``[[@3@,@4@]]`` a group's list). All bad input is found here,
before anything is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taskforge.call import Call
from taskforge.canvas import Canvas, Chain, Chord, Group
from taskforge.errors import (
    SerializationError,
    WorkflowCycleError,
    WorkflowError,
    WorkflowTooLargeError,
)
from taskforge.job import JobPriority
from taskforge.options import TaskOptions

#: Most nodes (calls, callbacks included) one workflow may have.
MAX_WORKFLOW_MEMBERS = 50_000
#: Most dependency edges (a group followed by a group links every pair).
MAX_WORKFLOW_EDGES = 1_000_000

_WORKFLOW_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")

MAIN, CALLBACK, ERRBACK = "main", "callback", "errback"


class _Placeholder:
    """Stands for the previous step's value when checking that arguments fit."""

    def __repr__(self) -> str:
        return "<previous result>"


@dataclass(slots=True)
class Node:
    """One call of the workflow. ``prefix`` is the JSON template of the arguments put in front
    of the call's own (``"[]"``: none); ``errs`` are the errbacks its death makes ready."""

    index: int
    call: Call
    kind: str
    deps: tuple[int, ...] = ()
    prefix: str = "[]"
    next: list[int] = field(default_factory=list)
    errs: tuple[int, ...] = ()
    err_nodes: tuple[Node, ...] = ()


@dataclass(slots=True)
class Graph:
    """The compiled workflow: nodes, the template of its value, and its tree (for display)."""

    nodes: list[Node]
    output: str
    tree: dict[str, Any]
    edges: int = 0

    @property
    def roots(self) -> list[Node]:
        """Nodes that start at once: main or callback nodes without dependencies."""
        return [n for n in self.nodes if not n.deps and n.kind != ERRBACK]

    @property
    def main_count(self) -> int:
        """Nodes whose success the workflow's success needs."""
        return sum(1 for n in self.nodes if n.kind == MAIN)


@dataclass(frozen=True, slots=True)
class _Input:
    deps: tuple[int, ...]
    template: str


def check_workflow_id(workflow_id: str) -> str:
    """Return ``workflow_id`` if it can name a workflow (letters, digits, ``_.-``)."""
    if not _WORKFLOW_ID.match(workflow_id):
        raise WorkflowError(
            f"invalid workflow id {workflow_id!r}: use 1-100 letters, digits or '_.-'"
        )
    return workflow_id


def member_id(workflow_id: str, index: int) -> str:
    """The job id of node ``index``: deterministic, so a replayed advance enqueues it once."""
    return f"wf:{workflow_id}:{index}"


def parse_member_id(job_id: str) -> tuple[str, int] | None:
    """``(workflow id, node)`` of a member's job id; None for any other job."""
    if not job_id.startswith("wf:"):
        return None
    wid, _, index = job_id[3:].rpartition(":")
    if not wid or not index.isdigit():
        return None
    return wid, int(index)


def compile_workflow(canvas: Canvas) -> Graph:
    """Number the calls of ``canvas`` and link them.

    Raises:
        WorkflowError: an empty chain or group, a chord without callback, a partial call with
            no previous step, arguments that cannot take the previous value first.
        WorkflowCycleError: the shape contains itself.
        WorkflowTooLargeError: more than :data:`MAX_WORKFLOW_MEMBERS` nodes.
    """
    builder = _Builder()
    out, tree = builder.visit(canvas, None, (), MAIN)
    builder.finish(tree)
    graph = Graph(builder.nodes, out.template, tree, builder.edges)
    if graph.main_count == 0:
        raise WorkflowError("a workflow needs at least one step")
    return graph


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.errbacks: list[Node] = []
        self.edges = 0
        self._path: set[int] = set()

    def visit(
        self, item: Canvas, given: _Input | None, errs: tuple[Node, ...], kind: str
    ) -> tuple[_Input, dict[str, Any]]:
        if id(item) in self._path:
            raise WorkflowCycleError(f"{type(item).__name__} contains itself; build a new one")
        self._path.add(id(item))
        try:
            own = tuple(self.errback(e) for e in item.errbacks)
            out, tree = self.shape(item, given, (*errs, *own), kind)
            if item.callbacks:
                tree["on_success"] = [self.visit(c, out, (), CALLBACK)[1] for c in item.callbacks]
            if own:
                tree["on_failure"] = own
            return out, tree
        finally:
            self._path.discard(id(item))

    def finish(self, tree: dict[str, Any]) -> None:
        """Number the errbacks after every other node (members keep the numbers of their
        order in the shape), then write their numbers where they are referred to."""
        for node in self.errbacks:
            node.index = len(self.nodes)
            self.nodes.append(node)
        for node in self.nodes:
            node.errs = tuple(e.index for e in node.err_nodes)
        _number_errbacks(tree)

    def shape(
        self, item: Canvas, given: _Input | None, errs: tuple[Node, ...], kind: str
    ) -> tuple[_Input, dict[str, Any]]:
        if isinstance(item, Chain):
            return self.chain(item, given, errs, kind)
        if isinstance(item, Group):
            return self.group(item.members, given, errs, kind)
        if isinstance(item, Chord):
            head, head_tree = self.group(item.header.members, given, errs, kind)
            body, body_tree = self.visit(item.body, head, errs, kind)
            return body, {"type": "chord", "header": head_tree, "body": body_tree}
        if not isinstance(item, Call):
            raise WorkflowError(f"{item!r} is not a signature; write task.s(...)")
        return self.call(item, given, errs, kind)

    def chain(
        self, item: Chain, given: _Input | None, errs: tuple[Node, ...], kind: str
    ) -> tuple[_Input, dict[str, Any]]:
        if not item.steps:
            raise WorkflowError("a chain needs at least one step: chain(task.s(...), ...)")
        steps = []
        out = given
        for step in item.steps:
            out, tree = self.visit(step, out, errs, kind)
            steps.append(tree)
        assert out is not None
        return out, {"type": "chain", "steps": steps}

    def group(
        self, members: tuple[Canvas, ...], given: _Input | None, errs: tuple[Node, ...], kind: str
    ) -> tuple[_Input, dict[str, Any]]:
        if not members:
            raise WorkflowError("a group needs at least one member: group(task.s(...), ...)")
        outs, trees = [], []
        for member in members:
            out, tree = self.visit(member, given, errs, kind)
            outs.append(out)
            trees.append(tree)
        deps = tuple(dict.fromkeys(d for o in outs for d in o.deps))
        template = "[" + ",".join(o.template for o in outs) + "]"
        return _Input(deps, template), {"type": "group", "members": trees}

    def call(
        self, call: Call, given: _Input | None, errs: tuple[Node, ...], kind: str
    ) -> tuple[_Input, dict[str, Any]]:
        _check_fit(call, given is not None and not call.immutable)
        node = self.add(call, kind)
        node.err_nodes = errs if kind == MAIN else ()
        if given is not None:
            node.deps = given.deps
            node.prefix = "[]" if call.immutable else f"[{given.template}]"
            self.edges += len(given.deps)
            if self.edges > MAX_WORKFLOW_EDGES:
                raise WorkflowTooLargeError(
                    f"workflow has over {MAX_WORKFLOW_EDGES} links between steps (a big group "
                    "followed by a big group links every pair); put a single step between them"
                )
            for dep in given.deps:
                self.nodes[dep].next.append(node.index)
        return _Input((node.index,), f"@{node.index}@"), {"type": "call", "node": node.index}

    def errback(self, call: Call) -> Node:
        _check_fit(call, False, errback=not call.immutable)
        _check_member_options(call)
        self._count()
        node = Node(-1, call, ERRBACK, prefix="[]" if call.immutable else "err")
        self.errbacks.append(node)
        return node

    def _count(self) -> None:
        if len(self.nodes) + len(self.errbacks) >= MAX_WORKFLOW_MEMBERS:
            raise WorkflowTooLargeError(
                f"workflow has more than {MAX_WORKFLOW_MEMBERS} members (callbacks included); "
                "split it, or let one task enqueue the next batch"
            )

    def add(self, call: Call, kind: str) -> Node:
        _check_member_options(call)
        self._count()
        node = Node(len(self.nodes), call, kind)
        self.nodes.append(node)
        return node


def _number_errbacks(tree: dict[str, Any]) -> None:
    if "on_failure" in tree:
        tree["on_failure"] = [n.index for n in tree["on_failure"]]
    children = [*tree.get("steps", ()), *tree.get("members", ()), *tree.get("on_success", ())]
    children += [tree[k] for k in ("header", "body") if k in tree]
    for child in children:
        _number_errbacks(child)


def _check_member_options(call: Call) -> None:
    """Refuse the options a member cannot honour: its job id is the workflow's own."""
    o = call.options
    if o.job_id is not None:
        raise WorkflowError(
            f"step {call.task!r} has job_id={o.job_id!r}, but a workflow member's job id is "
            "'wf:<workflow id>:<node>'; drop job_id (give the workflow an id instead)"
        )
    if o.unique_key is not None:
        raise WorkflowError(
            f"step {call.task!r} has unique_key={o.unique_key!r}: a duplicate would be dropped "
            "and its workflow would wait for it forever; drop unique_key for workflow steps "
            "(a workflow's own id already makes its .delay() idempotent)"
        )


def _check_fit(call: Call, prepended: bool, *, errback: bool = False) -> None:
    if call.fits is None:  # a call by name (app.call): its function is not known here
        return
    if errback:
        args: tuple[Any, ...] = (_Placeholder(), _Placeholder(), *call.args)
        why = call.fits(args, call.kwargs)
        if why:
            raise WorkflowError(
                f"on_failure callback {call.task!r} cannot take (job_id, error) first: {why}; "
                "give it two leading parameters, or use .si() with all its arguments"
            )
        return
    if prepended:
        why = call.fits((_Placeholder(), *call.args), call.kwargs)
        if why:
            raise WorkflowError(
                f"step {call.task!r} cannot take the previous step's value first: {why}; "
                "drop one argument, or write .si(...) to ignore the previous value"
            )
    elif call.partial:
        raise WorkflowError(
            f"step {call.task!r} is missing an argument and has no previous step to supply it; "
            "give all its arguments, or put a step before it"
        )


def call_spec(call: Call) -> str:
    """A node's call as stored JSON (task, args, kwargs, options); raises SerializationError."""
    o = call.options
    options = {
        "name": o.name, "queue": o.queue, "priority": o.priority.value,
        "max_retries": o.max_retries, "retry_backoff": o.retry_backoff,
        "retry_backoff_cap": o.retry_backoff_cap, "retry_jitter": o.retry_jitter,
        "timeout": o.timeout, "rate_limit": o.rate_limit, "concurrency": o.concurrency,
        "soft_timeout": o.soft_timeout,
    }  # fmt: skip
    # expires: seconds count from the member's own enqueue (when it becomes ready), as for a
    # plain call; a datetime is a moment, kept as epoch seconds.
    if isinstance(o.expires, datetime):
        options["expires_at_s"] = o.expires.timestamp()
    elif o.expires is not None:
        options["expires"] = o.expires
    spec = {"t": call.task, "a": list(call.args), "k": call.kwargs, "o": options}
    try:
        return json.dumps(spec, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"arguments of {call.task!r} cannot be sent as JSON: {exc}; pass plain data "
            "(str, int, float, bool, None, list, dict) or ids the task can load"
        ) from exc


def member_call(workflow_id: str, index: int, spec: dict[str, Any], leading: list[Any]) -> Call:
    """The call that becomes node ``index``'s job: ``leading`` values first, then its own."""
    o = dict(spec["o"])
    o["priority"] = JobPriority(o["priority"])
    at_s = o.pop("expires_at_s", None)
    if at_s is not None:
        o["expires"] = datetime.fromtimestamp(at_s, UTC)
    options = TaskOptions(**o, job_id=member_id(workflow_id, index))
    return Call(spec["t"], (*leading, *spec["a"]), spec["k"], options)


def node_rows(graph: Graph) -> list[tuple[str, str, str, int]]:
    """The rows ``wf_create`` stores: (links JSON, call JSON, initial state, wait count)."""
    rows = []
    for n in graph.nodes:
        links: dict[str, Any] = {"k": n.kind, "q": n.call.options.queue, "p": n.prefix}
        if n.next:
            links["n"] = n.next
        if n.errs:
            links["e"] = list(n.errs)
        if "@" in n.prefix:
            links["d"] = list(n.deps)
        state = "ready" if not n.deps and n.kind != ERRBACK else "pending"
        rows.append(
            (json.dumps(links, separators=(",", ":")), call_spec(n.call), state, len(n.deps))
        )
    return rows


__all__ = [
    "CALLBACK",
    "ERRBACK",
    "MAIN",
    "MAX_WORKFLOW_EDGES",
    "MAX_WORKFLOW_MEMBERS",
    "Graph",
    "Node",
    "call_spec",
    "check_workflow_id",
    "compile_workflow",
    "member_call",
    "member_id",
    "node_rows",
    "parse_member_id",
]
