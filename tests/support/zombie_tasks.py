"""Tasks for the paused-worker (zombie) test: ``taskforge worker tests.support.zombie_tasks:app``.

Each job writes ``ticks`` side effects, one every 20 ms: an entry ``<pid> <epoch s>`` in a ledger
list on the test Redis, so the test sees which process ran it and until when. A count, not a
deadline: a paused worker's job still has work left when it resumes.
"""

from __future__ import annotations

import os
import time

import anyio
import redis

from taskforge import Taskforge

app = Taskforge()


def ledger_key(prefix: str) -> str:
    """The ledger list the tickers append to."""
    return f"{prefix}:zombie:ledger"


def _tick(client: redis.Redis) -> None:
    client.rpush(ledger_key(app.settings.prefix), f"{os.getpid()} {time.time():.3f}")


@app.task(name="zombie.ticker_sync", max_retries=0)
def ticker_sync(ticks: int) -> str:
    """Write ``ticks`` side effects from a worker thread."""
    client = redis.Redis.from_url(app.settings.redis_url)
    for _ in range(ticks):
        _tick(client)
        time.sleep(0.02)
    return str(os.getpid())


@app.task(name="zombie.ticker_async", max_retries=0)
async def ticker_async(ticks: int) -> str:
    """Write ``ticks`` side effects on the worker's event loop."""
    client = redis.Redis.from_url(app.settings.redis_url)
    for _ in range(ticks):
        _tick(client)
        await anyio.sleep(0.02)
    return str(os.getpid())
