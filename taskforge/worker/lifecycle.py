"""The worker: its slots and lifecycle (start, run, stop, drain), built from small collaborators.

:class:`Worker` only supervises. It owns the :class:`Slots` and wires the rooms that do the work:
the :class:`Fetcher` leases jobs, the :class:`JobRunner` takes each from its lease to its outcome,
the :class:`OutcomeWriter` records outcomes in batches, and :class:`Upkeep` keeps leases and the
heartbeat alive and listens for cancel requests. Each collaborator is handed the others it calls,
so what a room may touch is visible in its constructor.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from taskforge.driver.connection import async_client
from taskforge.driver.nodes import node_warnings, read_nodes
from taskforge.driver.task_clients import TaskClients
from taskforge.errors import BrokerError
from taskforge.limits.acquire import Limiter
from taskforge.metrics import MetricsExporter, WorkerMetrics
from taskforge.middleware import Hooks, Middleware
from taskforge.progress import ProgressWriter
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.keys import check_queue_name
from taskforge.registry import Registry
from taskforge.settings import Settings
from taskforge.worker.executor import Executor
from taskforge.worker.fetcher import Fetcher
from taskforge.worker.outage import Outage
from taskforge.worker.outcomes import OutcomeWriter, WorkerStats
from taskforge.worker.runner import JobRunner
from taskforge.worker.slots import Slots
from taskforge.worker.upkeep import Upkeep, heartbeat_interval_s
from taskforge.workflow.advance import WorkflowAdvancer

if TYPE_CHECKING:  # the CLI builds the pool; importing it here would load multiprocessing
    from taskforge.worker.pool import ProcessPool

log = logging.getLogger("taskforge.worker")


class Worker:
    """Runs jobs from ``queues`` with up to ``concurrency`` at once.

    ``burst=True`` returns once nothing is ready, running, or due within ``burst_horizon_s``.
    On :meth:`stop`, fetching stops; running jobs get ``grace_s`` to finish, then are handed back
    to the front of their queue (not counted as an attempt).
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = 10,
        burst: bool = False,
        burst_horizon_s: float = 5.0,
        grace_s: float = 10.0,
        block_s: float = 5.0,
        worker_id: str | None = None,
        metrics_port: int | None = None,
        middleware: Sequence[Middleware] = (),
        outcome_log: Callable[[dict[str, Any]], None] | None = None,
        pool: ProcessPool | None = None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.settings = settings
        self.registry = registry
        self.queues = [check_queue_name(q) for q in dict.fromkeys(queues)]
        self.concurrency = concurrency
        self.burst = burst
        self.burst_horizon_s = burst_horizon_s
        self.grace_s = grace_s
        self.block_s = block_s
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.stats = WorkerStats()
        self.broker = AsyncBroker(settings)
        self._blocker = AsyncBroker(settings, async_client(settings, blocking_s=block_s))
        self.pool = pool  # sync tasks run in its processes (started and stopped by run())
        self.metrics = WorkerMetrics()
        self.metrics_port = metrics_port
        self.heartbeat_s = heartbeat_interval_s()
        self._started_at = time.time()
        self._hooks = Hooks(middleware)
        self._progress = ProgressWriter(self.broker)
        self._workflows = WorkflowAdvancer(self.broker)
        limiter = Limiter(self.broker)
        self._slots = Slots(concurrency)
        outage = Outage(self.id)
        self._writer = OutcomeWriter(
            self.broker, self._slots, outage, self._workflows,
            worker_id=self.id, stats=self.stats, metrics=self.metrics, outcome_log=outcome_log,
        )  # fmt: skip
        self.task_clients = TaskClients(settings, concurrency=concurrency)  # current_job().redis
        executor = Executor(registry, thread_limiter=anyio.CapacityLimiter(concurrency), pool=pool)
        self._runner = JobRunner(
            settings, registry, self.broker, executor, self._slots, self._writer,
            limiter=limiter, progress=self._progress, metrics=self.metrics, hooks=self._hooks,
            on_bug=self.stop_now, clients=self.task_clients,
        )  # fmt: skip
        self._fetcher = Fetcher(
            self.broker, self._blocker, self._slots, self._runner, self._writer, outage,
            self._workflows, worker_id=self.id, queues=self.queues, block_s=block_s, burst=burst,
            burst_horizon_s=burst_horizon_s,
        )  # fmt: skip
        self._upkeep = Upkeep(
            settings, self.broker, self._slots, self._writer, limiter,
            worker_id=self.id, describe=self.heartbeat,
        )  # fmt: skip

    @property
    def idle_queues(self) -> frozenset[str]:
        """The queues whose fetch is blocked on their wake marker right now (an idle worker)."""
        return self._fetcher.idle_queues

    def stop(self) -> None:
        """Stop fetching; running jobs get the grace period. Safe to call more than once."""
        if not self._fetcher.stopping:
            log.info(
                "worker %s stopping: waiting up to %.0fs for running jobs", self.id, self.grace_s
            )
        self._fetcher.stop()

    def stop_now(self) -> None:
        """Stop and hand running jobs back at once (a second signal)."""
        self.grace_s = 0
        self.stop()
        self._slots.abort_all()

    async def run(self) -> WorkerStats:
        """Run until stopped (or, in burst mode, until the queues are drained)."""
        await self.check_server()
        await self._hooks.worker_start(self)
        exporter = self._start_metrics()
        log.info(
            "worker %s up: queues=%s concurrency=%d redis=%s",
            self.id, ",".join(self.queues), self.concurrency, self.settings.masked_url(),
        )  # fmt: skip
        try:
            if self.pool is not None:
                await self.pool.start()
            async with anyio.create_task_group() as services:
                services.start_soon(self._writer.flush_loop)
                services.start_soon(self._upkeep.lease_loop)
                services.start_soon(self._upkeep.heartbeat_loop, self.heartbeat_s)
                services.start_soon(self._upkeep.control_loop)
                services.start_soon(self._progress.run)
                services.start_soon(self._workflows.run)
                services.start_soon(self._workflows.upkeep, self.queues)
                await self._start_scheduler(services)
                await self._fetcher.run()
                await self._drain()
                await self._runner.join()
                await self._writer.flush_all()
                services.cancel_scope.cancel()
        finally:
            if exporter is not None:
                exporter.stop()
            with anyio.CancelScope(shield=True):
                await self._runner.cancel_all()
                await self._hooks.worker_stop(self)
                if self.pool is not None:
                    await self.pool.aclose()
                await self._workflows.drain()  # what the last outcome writes handed over
                await self._close()
        if self._runner.error is not None:
            raise self._runner.error
        return self.stats

    async def _start_scheduler(self, services: anyio.abc.TaskGroup) -> None:
        # Every worker schedules the periodic tasks of its queues; the claim makes each tick once.
        periodics = [p for p in self.registry.periodics() if p.call.options.queue in self.queues]
        if not periodics:
            return
        # Imported here: a worker without periodic tasks never loads the scheduler.
        from taskforge.client import Client
        from taskforge.cron.runner import Scheduler

        scheduler = Scheduler(self.broker, periodics, encode=Client(self.settings).encode)
        if not self.burst:
            services.start_soon(scheduler.run)
            return
        try:  # burst mode: claim what is due now, once, before draining the queues
            await scheduler.run_once()
        except BrokerError as exc:
            log.warning("cron ticks not claimed (%s)", exc)

    def _start_metrics(self) -> MetricsExporter | None:
        if self.metrics_port is None:
            return None
        exporter = MetricsExporter(
            self.settings, self.metrics, self.queues, port=self.metrics_port, extra=self._gauges
        )
        return exporter.start()

    def _gauges(self) -> dict[str, float]:
        return {"running_jobs": len(self._slots.running), "concurrency": self.concurrency}

    async def check_server(self) -> None:
        """Fail fast when Redis does not answer; warn about settings that can lose jobs.

        Raises:
            BrokerConnectionError: Redis cannot be reached (the message names the masked URL).
        """
        if self.settings.is_memory:  # the embedded server has no INFO; nothing to warn about
            await self.broker.run(self.broker.ops.known_queues())
            return
        infos, saves = await read_nodes(self.broker)
        for warning in node_warnings(infos, saves):
            log.warning("%s", warning)

    def heartbeat(self) -> dict[str, Any]:
        """What this worker says about itself in ``taskforge workers``."""
        host, pid = socket.gethostname(), os.getpid()
        running = self._slots.running
        return {
            "id": self.id,
            "host": host,
            "pid": pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "running": len(running),
            "running_jobs": list(running)[:100],
            "started": self._started_at,
            "last_seen": time.time(),
            "processed": self.stats.processed,
            "failed": self.stats.retried + self.stats.dead,
            "succeeded": self.stats.succeeded,
            "dead": self.stats.dead,
        }

    async def _drain(self) -> None:
        with anyio.move_on_after(self.grace_s):
            while self._slots.running:
                await self._slots.wait()
        self._slots.abort_all()

    async def _close(self) -> None:
        try:
            with anyio.move_on_after(2):
                await self.broker.run(self.broker.ops.forget_worker(self.id))
        except BrokerError:
            pass
        await self.task_clients.aclose()
        await self._blocker.aclose()
        await self.broker.aclose()
        log.info("worker %s stopped: %s", self.id, self.stats)


__all__ = ["Worker"]
