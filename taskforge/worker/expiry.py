"""``expires``: a job whose attempt has not started by its expiry time is cancelled, not run.

The producer writes the expiry (epoch ms) into the envelope at ``.delay()``; the worker checks it
against Redis server time just before it would start an attempt (the first or a retry). An
expired job ends ``cancelled`` with error type ``Expired``, published on ``job:updates`` like
any cancel, and its record expires after the result TTL. Expiry is seen when a worker picks the
job up: a job nobody fetches stays queued until then.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from taskforge.job import Job
from taskforge.protocol.brokers import AsyncBroker

#: How often the worker reads Redis's clock again (s): local clocks drift slowly.
RESYNC_S = 60.0


class ServerClock:
    """Redis server time, read on first use and every :data:`RESYNC_S`, followed locally
    in between (one ``TIME`` a minute at most, and only for workers that see expiring jobs)."""

    def __init__(self) -> None:
        self._offset_s = 0.0
        self._synced_at: float | None = None

    async def now_ms(self, broker: AsyncBroker) -> int:
        """Server time now, epoch ms."""
        local = time.monotonic()
        if self._synced_at is None or local - self._synced_at > RESYNC_S:
            server_ms = await broker.run(broker.ops.server_time_ms())
            self._offset_s = server_ms / 1000 - time.time()
            self._synced_at = local
        return int((time.time() + self._offset_s) * 1000)


def expired_reason(job: Job, now_ms: int) -> str | None:
    """Why ``job`` must not start at ``now_ms`` (None: it may)."""
    if job.expires_ms is None or now_ms < job.expires_ms:
        return None
    when = datetime.fromtimestamp(job.expires_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return f"expired: not started by {when}"


__all__ = ["RESYNC_S", "ServerClock", "expired_reason"]
