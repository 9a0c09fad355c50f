"""Cache warming as a taskforge task: the guide's ``cache.warm`` job type, at LOW priority.

    python examples/cache_warming.py                  # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/cache_warming.py

A producer enqueues ``cache.warm`` with the seed's ``JobQueue`` API; a worker runs it and fills
``workflow_def`` entries for a tenant, so the first user request is a cache hit.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from taskforge import JobPriority, JobQueue, Worker, default_app, get_cache_service, task

os.environ.setdefault("REDIS_URL", "memory://warming")

SOURCE_READS: list[str] = []


async def load_workflow_definition(workflow_id: str) -> dict[str, Any]:
    """Stands in for the database read the cache saves."""
    SOURCE_READS.append(workflow_id)
    return {"id": workflow_id, "steps": ["fetch", "transform", "deliver"]}


@task(name="cache.warm", priority="low", max_retries=2, timeout=60)
async def warm(tenant_id: str, workflow_ids: list[str]) -> int:
    """Put the tenant's hot workflow definitions in the cache; returns how many."""
    cache = await get_cache_service()
    for workflow_id in workflow_ids:
        definition = await load_workflow_definition(workflow_id)
        await cache.set(f"workflow_def:{workflow_id}", definition, tenant_id=tenant_id)
    return len(workflow_ids)


async def main() -> None:
    queue = JobQueue(queue_name="default")
    job_id = await queue.enqueue(
        task_name="cache.warm",
        payload={"tenant_id": "tenant-1", "workflow_ids": ["wf-1", "wf-2", "wf-3"]},
        priority=JobPriority.LOW,
    )
    stats = await Worker(default_app.settings, default_app.registry, burst=True).run()
    print(f"cache.warm job {job_id}: succeeded={stats.succeeded}")

    cache = await get_cache_service()
    reads_before = len(SOURCE_READS)
    definition = await cache.get_or_fetch(
        "workflow_def:wf-2", lambda: load_workflow_definition("wf-2"), tenant_id="tenant-1"
    )
    print("first request:", definition, "| source reads:", len(SOURCE_READS) - reads_before)
    print("cache stats:", cache.stats.as_dict())


if __name__ == "__main__":
    anyio.run(main)
