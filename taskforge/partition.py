"""Partitioned queues: one hot logical queue spread over N queues, hence N hash slots.

A queue lives in one hash slot, so on Redis Cluster one busy queue loads one primary. Partition
it: ``default`` with 4 partitions is the queues ``default:0`` .. ``default:3`` (keys
``taskforge:{default:0}:...``), which the cluster places on different primaries. Producers spread
calls over the partitions; a worker drains them all, one fetcher per partition::

    from taskforge.partition import Partitioned

    hot = Partitioned("default", 4)
    app.enqueue_many(hot.spread([add.s(i, i) for i in range(1000)]))   # round robin
    add.options(queue=hot.by_key(user_id)).delay(1, 2)                  # same key, same partition
    Worker(settings, app.registry, queues=hot.queues)                   # or -Q default:0 -Q ...

The trade-off: priority and FIFO order hold *within* a partition only. Two partitions are two
queues, drained by independent fetchers, so a LOW job of one partition may start while a HIGH
job waits in another; uniqueness keys, too, are per partition (use :meth:`Partitioned.by_key`
with the unique key to keep them exact). Spread by key when order per key matters.
"""

from __future__ import annotations

import itertools
import threading
import zlib
from collections.abc import Sequence
from dataclasses import replace

from taskforge.call import Call
from taskforge.errors import ConfigurationError
from taskforge.protocol.keys import check_queue_name


class Partitioned:
    """The ``partitions`` queues ``<queue>:0`` .. ``<queue>:<partitions - 1>`` of one queue."""

    def __init__(self, queue: str, partitions: int):
        if partitions < 1:
            raise ConfigurationError(f"partitions must be >= 1, got {partitions}")
        check_queue_name(queue)
        self.queue = queue
        self.queues = [check_queue_name(f"{queue}:{i}") for i in range(partitions)]
        self._next = itertools.count()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.queues)

    def next(self) -> str:
        """The next partition, round robin (thread-safe)."""
        with self._lock:
            i = next(self._next)
        return self.queues[i % len(self.queues)]

    def by_key(self, key: str) -> str:
        """The partition of ``key`` (CRC-32, stable across processes and restarts)."""
        return self.queues[zlib.crc32(key.encode()) % len(self.queues)]

    def spread(self, calls: Sequence[Call], *, key: str | None = None) -> list[Call]:
        """``calls`` assigned to partitions: round robin, or by ``kwargs[key]`` when given.

        Raises:
            ConfigurationError: a call has no keyword argument ``key``.
        """
        out = []
        for call in calls:
            if key is None:
                queue = self.next()
            elif key in call.kwargs:
                queue = self.by_key(str(call.kwargs[key]))
            else:
                raise ConfigurationError(f"call of {call.task!r} has no keyword argument {key!r}")
            out.append(replace(call, options=replace(call.options, queue=queue)))
        return out


__all__ = ["Partitioned"]
