"""Time and control in one run: cron, schedules, cancel, unique jobs, limits, results, progress.

    python examples/scheduling.py                       # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/scheduling.py

One worker runs in this process for a few seconds; in production you would start several with
``taskforge worker examples.scheduling:app`` and every tick, limit and unique key would still hold
across all of them (they live in Redis). ``taskforge cron examples.scheduling:app`` lists the
periodic tasks with their next fire times.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import anyio

from taskforge import JobFailedError, Settings, Taskforge, Worker, current_job

os.environ.setdefault("REDIS_URL", "memory://scheduling")
app = Taskforge(Settings.from_env(prefix=os.environ.get("TASKFORGE_PREFIX", "scheduling-demo")))
started = time.monotonic()


def say(text: str) -> None:
    # One write per line: sync tasks print from worker threads.
    print(f"[{time.monotonic() - started:5.2f}s] {text}\n", end="", flush=True)


# A 6th cron field is seconds (last, as croniter reads them): every 2 s. Each tick runs once
# however many workers run.
@app.task(name="demo.heartbeat", cron="* * * * * */2", catch_up="skip")
def heartbeat() -> None:
    say(f"cron tick -> job {current_job().job.id}")


@app.task(name="demo.report")
def report(kind: str) -> None:
    say(f"periodic report {kind!r}")


# The same task on a schedule of its own, with fixed arguments (cron in a time zone).
app.periodic(report, cron="* * * * * */3", args=["sales"], name="report-sales", timezone="UTC")


@app.task(name="demo.email", concurrency=2)  # at most 2 at once, cluster-wide
async def email(to: str) -> str:
    say(f"email to {to} starts")
    await anyio.sleep(0.3)
    return f"sent to {to}"


@app.task(name="demo.api", rate_limit="3/s")  # at most 3 starts per second, cluster-wide
def call_api(n: int) -> int:
    say(f"api call {n}")
    return n


@app.task(name="demo.import")
async def long_import(rows: int) -> int:
    for done in range(0, rows + 1, rows // 4):
        current_job().set_progress(done / rows, f"{done}/{rows} rows")
        await anyio.sleep(0.1)
    return rows


@app.task(name="demo.fragile", max_retries=0)
def fragile() -> None:
    raise ValueError("the input file is empty")


@app.task(name="demo.slow")
async def slow() -> None:
    await anyio.sleep(60)


async def watch_progress(ready: anyio.Event) -> None:
    broker = app.client.abroker
    async for _, data in broker.subscribe(app.settings.events_channel, ready=ready):
        event = json.loads(data)
        if "progress" in event:
            say(f"progress {event['progress']:.0%} ({event['progress_message']})")


async def produce() -> None:
    later = await email.aschedule(timedelta(seconds=1), "scheduled@example.com")
    doomed = await email.aschedule(timedelta(hours=1), "never@example.com")
    say(f"cancel a scheduled job: {await doomed.acancel()}")

    first = await report.options(unique_key="nightly", unique_until="running").adelay("nightly")
    again = await report.options(unique_key="nightly", unique_until="running").adelay("nightly")
    say(f"unique key: created={first.created}, duplicate created={again.created} (same id)")

    mails = [await email.adelay(f"user{i}@example.com") for i in range(4)]
    for n in range(6):
        await call_api.adelay(n)
    imported = await long_import.adelay(400)

    running = await slow.adelay()
    with anyio.fail_after(10):
        while (await running.astatus()).value != "active":
            await anyio.sleep(0.05)
    say(f"cancel a running job: {await running.acancel()}")

    say(f"results: {[await m.aresult(timeout=10) for m in mails]}")
    say(f"scheduled email: {await later.aresult(timeout=10)}; import: {await imported.aresult()}")
    try:
        await (await fragile.adelay()).aresult(timeout=10)
    except JobFailedError as exc:
        say(f"remote error: {exc.error_type}: {exc.message}")
    try:
        await running.aresult(timeout=5)
    except JobFailedError as exc:
        say(f"the running job ended {exc.status}")


async def main() -> None:
    worker = Worker(app.settings, app.registry, concurrency=8, block_s=1, grace_s=1)
    async with anyio.create_task_group() as tg:

        async def run_worker() -> None:
            await worker.run()
            tg.cancel_scope.cancel()  # the worker stopped: stop watching progress too

        ready = anyio.Event()
        tg.start_soon(watch_progress, ready)
        await ready.wait()
        tg.start_soon(run_worker)
        await produce()
        await anyio.sleep(max(0.0, 4.5 - (time.monotonic() - started)))  # a few cron ticks
        worker.stop()


if __name__ == "__main__":
    anyio.run(main)
