"""The worker: fetch leased jobs, run them in a bounded pool, record outcomes, keep leases.

One process, one anyio event loop. Per queue a fetcher leases as many jobs as there are free
slots in one script call and blocks on the queue's wake marker when none are ready. Outcomes are
written in batches by one flusher; one lease keeper renews every running lease in one call per
queue. Promotion of scheduled jobs and reclaiming of expired leases happen inside every fetch.

Rooms: ``lifecycle`` (:class:`Worker`: slots, run, stop, drain), ``fetcher`` (leasing and idle
blocking), ``runner`` (one job from its lease to its outcome), ``executor`` (calling the task:
thread, loop or process pool; timeouts; failure classification), ``outcomes`` (the batched outcome
writer), ``upkeep`` (lease renewal, heartbeat, control channel), ``slots``, ``outage``, and the
helpers ``pool``, ``soft_timeout``, ``expiry``, ``outcome_log``.
"""

from taskforge.worker.lifecycle import Worker
from taskforge.worker.outcomes import WorkerStats

__all__ = ["Worker", "WorkerStats"]
