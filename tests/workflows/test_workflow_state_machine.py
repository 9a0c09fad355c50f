"""Property test: workflow advances against a model, with workers that die at every point.

The companion of ``tests/protocol/test_state_machine.py`` (which drives the queue scripts): here
the real fetch and finish scripts run members of a chord-then-chain workflow, and a "worker" may die
after the finish (outbox written, no advance), after the advance (nothing enqueued yet), or not
at all; the upkeep replays what is owed, any number of times. A reference model applies the
same rules; the invariants say no step is enqueued twice, none is lost once the upkeep ran, and
Redis's node states and workflow status equal the model's.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskforge import JobStatus, Settings, Taskforge, chain, chord, group
from taskforge.protocol.records import Outcome
from taskforge.workflow.graph import ERRBACK, MAIN, Graph, compile_workflow, member_call
from taskforge.workflow.ops import MemberOutcome, ReadyNode, WorkflowOps, outbox

Q = "default"


class WorkflowMachine(RuleBasedStateMachine):
    """Members of one workflow run through the real scripts; the model mirrors the advance."""

    redis_url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        prefix = f"tfwsm-{uuid.uuid4().hex[:10]}"
        self.app = Taskforge(Settings(redis_url=self.redis_url, prefix=prefix))
        self.broker = self.app.client.broker
        self.ops = self.broker.ops
        self.wf = WorkflowOps(self.app.settings)
        self.redis: Any = self.broker.client
        self.created: Counter[int] = Counter()
        self.owed: list[tuple[MemberOutcome, bool]] = []  # (outcome, advanced already)
        self.done: list[MemberOutcome] = []

        @self.app.task(name="m.add")
        def add(a: int, b: int) -> int:
            return a + b

        @self.app.task(name="m.total")
        def total(values: list[int]) -> int:
            return sum(values)

        @self.app.task(name="m.alert")
        def alert(job_id: str, error: str) -> None:
            return None

    def teardown(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.app.settings.prefix}:*", count=1000))
        if keys:
            self.redis.unlink(*keys)
        self.app.client.close()

    @initialize(members=st.integers(1, 4), tail=st.integers(0, 2))
    def send(self, members: int, tail: int) -> None:
        add = self.app.registry.get("m.add")
        total, alert = self.app.registry.get("m.total"), self.app.registry.get("m.alert")
        head = chord(group(add.s(i, i) for i in range(members)), total.s())
        canvas = chain(head, *[add.s(1) for _ in range(tail)]).on_failure(alert.s())
        self.graph: Graph = compile_workflow(canvas)
        self.handle = canvas.delay()
        self.wid = self.handle.id
        nodes = self.graph.nodes
        self.state = {n.index: "pending" for n in nodes}
        self.wait = {n.index: len(n.deps) for n in nodes}
        self.status = "running"
        for n in self.graph.roots:
            self.state[n.index] = "ready"
            self.created[n.index] += 1

    # -------------------------------------------------------------- the model

    def model_outcome(self, node: int, status: str) -> None:
        """The advance's rules, written plainly."""
        if self.state[node] not in ("pending", "ready"):
            return  # a replay
        self.state[node] = status
        me = self.graph.nodes[node]
        if self.status != "running" and not (self.status == "succeeded" and me.kind != MAIN):
            return
        if status == "succeeded":
            for child in me.next:
                self.wait[child] -= 1
                if self.wait[child] == 0 and self.state[child] == "pending":
                    self.state[child] = "ready"
            if me.kind == MAIN and all(
                self.state[n.index] == "succeeded" for n in self.graph.nodes if n.kind == MAIN
            ):
                self.status = "succeeded"
                self.settle("skipped", ERRBACK)
        elif me.kind == MAIN and self.status == "running":
            self.status = "failed"
            self.settle("cancelled", None)
            for e in me.errs:
                self.state[e] = "ready"

    def settle(self, mark: str, kind: str | None) -> None:
        for n in self.graph.nodes:
            if self.state[n.index] == "pending" and (kind is None or n.kind == kind):
                self.state[n.index] = mark

    # -------------------------------------------------------------- rules

    @rule(success=st.booleans(), dies=st.sampled_from(["no", "before_advance", "after_advance"]))
    def a_worker_runs_one_member(self, success: bool, dies: str) -> None:
        fetched = self.broker.run(self.ops.fetch(Q, 1, "sm"))
        if not fetched.jobs:
            return
        lease = fetched.jobs[0]
        node = int(lease.id.rsplit(":", 1)[1])
        status = JobStatus.SUCCEEDED if success else JobStatus.DEAD
        outcome = Outcome(lease.id, lease.token, status, str(node) if success else "", "E", "x")

        assert self.broker.run(self.ops.finish(Q, [outcome])) == [True]
        assert self.redis.zscore(outbox(self.app.settings.prefix, Q), lease.id) is not None

        member = MemberOutcome(lease.id, node, status.value, outcome.result_json, "E: x")
        if dies == "before_advance":
            self.owed.append((member, False))
            return
        ready = self.broker.run(self.wf.advance(self.wid, [member]))
        self.model_outcome(node, status.value)
        if dies == "after_advance":
            self.owed.append((member, True))
            return
        self.enqueue(ready)
        self.broker.run(self.wf.clear_outbox(Q, [lease.id]))
        self.done.append(member)

    @precondition(lambda self: self.owed)
    @rule()
    def the_upkeep_replays_the_outbox(self) -> None:
        due = self.broker.run(self.wf.due_outbox(Q, 0, 100))

        assert {o.job_id for o in due} >= {o.job_id for o, _ in self.owed}
        ready = self.broker.run(self.wf.advance(self.wid, due))
        for o in due:  # the advance applies them in this order; replays change nothing
            self.model_outcome(o.node, o.status)
        self.enqueue(ready)
        self.broker.run(self.wf.clear_outbox(Q, [o.job_id for o in due]))
        self.done += [o for o, _ in self.owed]
        self.owed = []

    @precondition(lambda self: self.done)
    @rule(data=st.data())
    def an_old_advance_is_replayed_again(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(self.done))

        self.enqueue(self.broker.run(self.wf.advance(self.wid, [member])))

    def enqueue(self, ready: list[ReadyNode]) -> None:
        jobs = []
        for r in ready:
            call = member_call(self.wid, r.index, r.call, r.leading)
            jobs.append(self.app.client.encode(call)[1])
        if jobs:
            for r, res in zip(ready, self.broker.run(self.ops.enqueue(Q, jobs)), strict=True):
                self.created[r.index] += res.created

    # -------------------------------------------------------------- invariants

    @invariant()
    def no_step_is_enqueued_twice(self) -> None:
        twice = {n for n, c in self.created.items() if c > 1}
        assert not twice, f"enqueued more than once: {twice}"

    @invariant()
    def node_states_and_status_match_the_model(self) -> None:
        meta, _, _, state_key, *_ = self.wf.keys(self.wid).all
        states = {int(n): s for n, s in self.redis.hgetall(state_key).items()}
        assert states == self.state
        assert self.redis.hget(meta, "status") == self.status

    @invariant()
    def once_nothing_is_owed_every_ready_step_has_its_job(self) -> None:
        if self.owed:
            return
        made_ready = {n for n, s in self.state.items() if s != "pending" and s != "skipped"}
        made_ready -= {n for n, s in self.state.items() if s == "cancelled" and not self.created[n]}
        assert {n for n, c in self.created.items() if c} == made_ready


def test_workflow_advances_enqueue_each_step_once_whatever_dies(redis_url: str) -> None:
    WorkflowMachine.redis_url = redis_url

    run_state_machine_as_test(
        WorkflowMachine,
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None),
    )
