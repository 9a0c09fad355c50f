"""The worker side of workflows: after members' outcomes are written, advance their workflows.

The finish script noted each member in its queue's outbox in the same step as its outcome.
Here the worker runs the workflow's advance (its own slot), enqueues the nodes it made ready
(their queues' slots, deterministic ids), then clears the outbox entries. A worker that dies
anywhere in between leaves the entries; any worker's upkeep replays those older than a lease,
and every step is idempotent, so each next job is enqueued exactly once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import anyio

from taskforge.client import Client
from taskforge.errors import BrokerError, EnqueueError
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.records import NewJob, Outcome
from taskforge.workflow.graph import member_call, parse_member_id
from taskforge.workflow.ops import MemberOutcome, ReadyNode, WorkflowOps

# The logger keeps its name from before the package layout: logging configs name it.
log = logging.getLogger("taskforge.workflow_advance")

#: Outbox entries one upkeep pass replays per queue.
REPLAY_BATCH = 500
#: Advanced outbox entries are cleared at most this long after their advance (s) ...
CLEAR_AFTER_S = 0.2
#: ... or as soon as this many wait.
CLEAR_BATCH = 1000


class WorkflowAdvancer:
    """Advances workflows for one worker (shares the worker's broker)."""

    def __init__(self, broker: AsyncBroker):
        self.broker = broker
        self.ops = WorkflowOps(broker.settings)
        self._encoder = Client(broker.settings)
        self._announced: set[str] = set()
        self._inbox: list[tuple[str, list[MemberOutcome]]] = []
        self._wanted = anyio.Event()
        self._busy = 0
        self._to_clear: dict[str, list[str]] = {}  # outbox entries advanced, not yet cleared
        self._clear_since = 0.0

    def note(self, queue: str, outcomes: Sequence[MemberOutcome]) -> None:
        """Hand over members whose outcome was just written; :meth:`run` advances them. No I/O:
        the worker's outcome writer goes on with the next batch meanwhile."""
        if outcomes:
            self._inbox.append((queue, list(outcomes)))
            self._wanted.set()

    @property
    def idle(self) -> bool:
        """True when nothing handed over waits or is being advanced."""
        return not self._inbox and not self._busy

    async def run(self) -> None:
        """Advance handed-over members as they come (a worker service; runs until cancelled).

        Advanced entries leave the outbox in batches, at most :data:`CLEAR_AFTER_S` later: the
        clear is off the path from one step to the next, and an entry left behind only costs a
        replay that changes nothing.
        """
        while True:
            wait_s = CLEAR_AFTER_S if self._to_clear else math.inf
            with anyio.move_on_after(wait_s):
                await self._wanted.wait()
            if self._wanted.is_set():
                self._wanted = anyio.Event()
                await self.drain(clear=False)
            if self._to_clear and time.monotonic() - self._clear_since >= CLEAR_AFTER_S:
                await self._clear()

    async def drain(self, *, clear: bool = True) -> None:
        """Advance everything handed over so far, in batches (several workflows and queues at a
        time under load), then clear their outbox entries. Shielded: a stopping worker
        finishes the batch it started."""
        while self._inbox:
            batch, self._inbox = self._inbox, []
            self._busy += 1
            try:
                with anyio.CancelScope(shield=True):
                    await self._advance_batch(batch)
            finally:
                self._busy -= 1
        if clear or sum(map(len, self._to_clear.values())) >= CLEAR_BATCH:
            await self._clear()

    async def _advance_batch(self, batch: list[tuple[str, list[MemberOutcome]]]) -> None:
        outcomes = [o for _, some in batch for o in some]
        try:
            await self.advance(outcomes)
        except BrokerError as exc:
            log.warning("workflow advance deferred to the outbox replay (%s)", exc)
            return
        if not self._to_clear:
            self._clear_since = time.monotonic()
        for queue, some in batch:
            self._to_clear.setdefault(queue, []).extend(o.job_id for o in some)

    async def _clear(self) -> None:
        pending, self._to_clear = self._to_clear, {}
        try:
            with anyio.CancelScope(shield=True):
                for queue, ids in pending.items():
                    await self.broker.run(self.ops.clear_outbox(queue, ids))
        except BrokerError as exc:  # the entries stay; a replay finds nothing left to do
            log.debug("workflow outbox not cleared (%s)", exc)

    async def after_finish(self, queue: str, outcomes: Sequence[MemberOutcome]) -> None:
        """Advance the workflows of these members now, then clear their outbox entries. A Redis
        failure leaves the entries for the upkeep's replay."""
        if not outcomes:
            return
        try:
            await self.advance(outcomes)
            await self.broker.run(self.ops.clear_outbox(queue, [o.job_id for o in outcomes]))
        except BrokerError as exc:
            log.warning("workflow advance deferred to the outbox replay (%s)", exc)

    async def upkeep(self, queues: Sequence[str]) -> None:
        """Every third of a lease, :meth:`replay` the outboxes of ``queues`` (a worker service,
        beside the lease keeper: the same cadence as the reclaim of expired leases)."""
        while True:
            await anyio.sleep(self.broker.settings.lease_s / 3)
            await self.replay(queues)

    async def replay(self, queues: Sequence[str]) -> int:
        """Advance outbox entries older than a lease (their worker died); returns how many."""
        min_age_ms = int(self.broker.settings.lease_s * 1000)
        total = 0
        for queue in queues:
            try:
                due = await self.broker.run(self.ops.due_outbox(queue, min_age_ms, REPLAY_BATCH))
                if due:
                    log.info("replaying %d workflow advance(s) of queue %s", len(due), queue)
                    await self.after_finish(queue, due)
                    total += len(due)
            except BrokerError as exc:
                log.warning("workflow outbox of %s not replayed (%s); retrying later", queue, exc)
        return total

    async def advance(self, outcomes: Sequence[MemberOutcome]) -> None:
        """Run each workflow's advance once for its members, and enqueue what became ready."""
        by_workflow: dict[str, list[MemberOutcome]] = {}
        for o in outcomes:
            parsed = parse_member_id(o.job_id)
            if parsed is not None:
                by_workflow.setdefault(parsed[0], []).append(o)
        for wid, members in by_workflow.items():
            ready = await self.broker.run(self.ops.advance(wid, members))
            while ready:
                ready = await self._enqueue(wid, ready)

    async def _enqueue(self, wid: str, ready: list[ReadyNode]) -> list[ReadyNode]:
        """Enqueue ready nodes; a node whose job cannot be built (the previous value made it too
        large, ...) dies in the workflow with that error. Returns what that death made ready."""
        by_queue: dict[str, list[NewJob]] = {}
        refused: list[MemberOutcome] = []
        for node in ready:
            call = member_call(wid, node.index, node.call, node.leading)
            try:
                queue, job = self._encoder.encode(call)
            except EnqueueError as exc:
                log.warning("workflow %s node %d cannot be enqueued: %s", wid, node.index, exc)
                error = f"{type(exc).__name__}: {exc}"
                refused.append(
                    MemberOutcome(call.options.job_id or "", node.index, "dead", "", error)
                )
                continue
            by_queue.setdefault(queue, []).append(job)
        for queue, jobs in by_queue.items():
            if queue not in self._announced:
                await self.broker.run(self.broker.ops.announce_queue(queue))
                self._announced.add(queue)
            await self.broker.run(self.broker.ops.enqueue(queue, jobs))
        if not refused:
            return []
        return await self.broker.run(self.ops.advance(wid, refused))


def finished_members(outcomes: Sequence[Outcome], accepted: Sequence[bool]) -> list[MemberOutcome]:
    """The workflow members among outcomes the finish script accepted (and noted in the outbox)."""
    out = []
    for o, ok in zip(outcomes, accepted, strict=True):
        parsed = parse_member_id(o.id) if ok else None
        if parsed is not None:
            error = f"{o.error_type}: {o.error}" if o.error_type else o.error
            out.append(MemberOutcome(o.id, parsed[1], o.status.value, o.result_json, error))
    return out


__all__ = ["CLEAR_AFTER_S", "CLEAR_BATCH", "REPLAY_BATCH", "WorkflowAdvancer", "finished_members"]
