"""Event-based invalidation: drop cached data when it changes, here and in other processes.

    python examples/cache_invalidation.py             # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/cache_invalidation.py

The writer invalidates the shared Redis entry itself (the guide's ``update_workflow``) and
publishes ``workflow.updated`` on the workflow channels; any service that derives its own cached
data from the workflow (here: an ``api_response`` listing) subscribes and drops it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import anyio

from taskforge import get_cache_service, get_redis_client
from taskforge.pubsub import tenant_channel

os.environ.setdefault("REDIS_URL", "memory://invalidation")

DB: dict[str, dict[str, Any]] = {"wf-1": {"id": "wf-1", "name": "onboarding", "version": 1}}


async def read_workflow(workflow_id: str) -> dict[str, Any]:
    return dict(DB[workflow_id])


async def update_workflow(workflow_id: str, tenant_id: str, data: dict[str, Any]) -> None:
    """Write the database, invalidate the cache, tell everyone else."""
    DB[workflow_id] = {**DB[workflow_id], **data, "version": DB[workflow_id]["version"] + 1}
    cache = await get_cache_service()
    await cache.invalidate(f"workflow_def:{workflow_id}", tenant_id=tenant_id)
    redis = await get_redis_client()
    await redis.publish_workflow_event(
        {
            "event_type": "workflow.updated",
            "workflow_id": workflow_id,
            "tenant_id": tenant_id,
            "timestamp": datetime.now(UTC).isoformat(),
        }
    )


async def invalidate_on_updates(tenant_id: str, ready: anyio.Event, seen: anyio.Event) -> None:
    """Another service: its API responses embed workflows, so updates invalidate them."""
    cache = await get_cache_service()
    redis = await get_redis_client()
    async for message in redis.subscribe(tenant_channel(tenant_id), ready=ready):
        if message["data"].get("event_type") == "workflow.updated":
            removed = await cache.invalidate_pattern("api_response:workflows*", tenant_id=tenant_id)
            print(
                f"listener: {message['data']['workflow_id']} updated, dropped {removed} response(s)"
            )
            seen.set()


async def main() -> None:
    cache = await get_cache_service()
    ready, seen = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(invalidate_on_updates, "tenant-1", ready, seen)
        await ready.wait()

        wf = await cache.get_or_fetch(
            "workflow_def:wf-1", lambda: read_workflow("wf-1"), tenant_id="tenant-1"
        )
        await cache.set("api_response:workflows:list", [wf], tenant_id="tenant-1")
        print("cached:", wf)

        await update_workflow("wf-1", "tenant-1", {"name": "onboarding v2"})
        await seen.wait()
        wf = await cache.get_or_fetch(
            "workflow_def:wf-1", lambda: read_workflow("wf-1"), tenant_id="tenant-1"
        )
        listing = await cache.get("api_response:workflows:list", tenant_id="tenant-1")
        print("after the update:", wf, "| cached listing:", listing)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
