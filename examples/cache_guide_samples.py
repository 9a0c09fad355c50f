"""The integration guide's caching and pub/sub samples, run as written (only imports changed).

    python examples/cache_guide_samples.py            # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/cache_guide_samples.py

The guide's code is in the functions below verbatim; ``db`` and ``workflow_id`` stand in for
the application's database, which the guide leaves out.
"""

from __future__ import annotations

import io
import json
import os
import sys
from datetime import datetime
from typing import Any

import anyio

from taskforge import cached, get_cache_service, get_redis_client

os.environ.setdefault("REDIS_URL", "memory://guide")


class _FakeDb:
    """The application's database, as far as the guide's samples need it."""

    def __init__(self) -> None:
        self.reads = 0

    async def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        self.reads += 1
        return {"id": workflow_id, "name": f"workflow {workflow_id}", "steps": 3}

    async def update_workflow(self, workflow_id: str, data: dict[str, Any]) -> None:
        pass


db = _FakeDb()
workflow_id = "123"
data = {"name": "renamed"}


# The guide's code, kept as the guide writes it.
# fmt: off
# ---------------------------------------------------------------- "Basic Operations"
async def basic_operations() -> None:
    # Get cache instance
    cache = await get_cache_service()

    # Set value with TTL
    await cache.set("key", {"data": "value"}, ttl=3600, tenant_id="tenant-1")

    # Get value
    value = await cache.get("key", tenant_id="tenant-1")

    # Get or fetch from source
    result = await cache.get_or_fetch(
        key="workflow:123",
        fetch_func=lambda: db.get_workflow(workflow_id),
        ttl=3600,
        tenant_id="tenant-1"
    )

    # Invalidate cache
    await cache.invalidate("key", tenant_id="tenant-1")

    # Invalidate by pattern
    await cache.invalidate_pattern("workflow:*", tenant_id="tenant-1")

    print("basic operations:", value, result)


# ---------------------------------------------------------------- "Using the @cached Decorator"
@cached(ttl=3600, key_prefix="workflow")
async def get_workflow(workflow_id: str, tenant_id: str):
    # This function's results will be cached
    return await db.get_workflow(workflow_id)


async def decorator_sample() -> None:
    reads_before = db.reads
    # First call: fetches from DB and caches
    result = await get_workflow("123", tenant_id="tenant-1")

    # Second call: returns from cache
    result = await get_workflow("123", tenant_id="tenant-1")
    print("@cached:", result, "db reads:", db.reads - reads_before)


# ---------------------------------------------------------------- "Cache Invalidation Strategies"
async def update_workflow(workflow_id: str, tenant_id: str):
    # Update database
    await db.update_workflow(workflow_id, data)

    # Invalidate cache
    cache = await get_cache_service()
    await cache.invalidate(f"workflow_def:{workflow_id}", tenant_id=tenant_id)


# ---------------------------------------------------------------- "Publishing Events"
async def publishing_events() -> None:
    redis = await get_redis_client()

    # Publish event
    await redis.publish("workflow:events", {
        "event_type": "workflow.started",
        "workflow_id": "123",
        "tenant_id": "tenant-1",
        "timestamp": datetime.utcnow().isoformat()
    })


# ---------------------------------------------------------------- "Subscribing to Events"
async def subscribing_to_events() -> None:
    redis = await get_redis_client()

    # Subscribe to channel
    async for message in redis.subscribe("workflow:events"):
        print(f"Event: {message['data']}")

        # Process event
        if message['data']['event_type'] == "workflow.completed":
            # Handle completion
            pass


# ---------------------------------------------------------------- "Health Checks"
async def health_checks() -> None:
    redis = await get_redis_client()
    health = await redis.health_check()
    print("health:", json.dumps(health))


# fmt: on


class _Tee(io.TextIOBase):
    """Passes output through and notices when the subscriber printed the completion event."""

    def __init__(self, out: Any, seen: anyio.Event) -> None:
        self.out, self.seen, self.text = out, seen, ""

    def write(self, s: str) -> int:
        self.text += s
        if "workflow.completed" in self.text:
            self.seen.set()
        return int(self.out.write(s))


async def main() -> None:
    await basic_operations()
    await decorator_sample()
    await update_workflow("123", tenant_id="tenant-1")
    await health_checks()

    redis = await get_redis_client()
    seen = anyio.Event()
    sys.stdout = _Tee(sys.stdout, seen)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(subscribing_to_events)
            # The subscriber is live once Redis counts it (pub/sub does not replay).
            while (await redis.client.pubsub_numsub("workflow:events"))[0][1] < 1:
                await anyio.sleep(0.01)
            await publishing_events()
            await redis.publish("workflow:events", {"event_type": "workflow.completed"})
            await seen.wait()
            tg.cancel_scope.cancel()
    sys.stdout = sys.__stdout__
    print("done")


if __name__ == "__main__":
    anyio.run(main)
