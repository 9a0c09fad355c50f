"""Task bodies that talk to Redis through the worker's own clients: ``current_job().redis``.

    python examples/task_redis.py                        # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/task_redis.py

An async task gets the worker's asyncio client, a sync task its blocking one: each made once
per worker from the app's settings, closed when the worker stops. (On a real Redis the counts
keep growing from one run to the next: the keys stay.)
"""

from __future__ import annotations

import os

import anyio

from taskforge import Settings, Taskforge, Worker, current_job

os.environ.setdefault("REDIS_URL", "memory://task-redis")
app = Taskforge(Settings.from_env(prefix=os.environ.get("TASKFORGE_PREFIX", "task-redis-demo")))


@app.task
async def count_visit(page: str) -> int:
    """Count a visit to ``page``; the new count."""
    return int(await current_job().redis.incr(f"{app.settings.prefix}:visits:{page}"))


@app.task
def count_visit_sync(page: str) -> int:
    """The same from a sync task, in a worker thread."""
    return int(current_job().sync_redis.incr(f"{app.settings.prefix}:visits:{page}"))


async def main() -> None:
    """Send three visits, run them in a burst worker, print the counts."""
    handles = [await count_visit.adelay("home"), await count_visit_sync.adelay("home")]
    handles.append(await count_visit.adelay("about"))
    await Worker(app.settings, app.registry, burst=True).run()
    print("counts:", sorted([await h.aresult(timeout=5) for h in handles]))


if __name__ == "__main__":
    anyio.run(main)
