"""A Sentry-style error hook as middleware: report failed attempts to any callable.

    python examples/error_reporting.py                       # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/error_reporting.py

No Sentry dependency: ``ErrorReporter`` hands each failure to a function you give it. With
sentry-sdk installed you would pass ``sentry_sdk.capture_exception``-like glue; here the
"reporter" prints. A request id travels from the producer to the worker in the job's headers
(``on_enqueue``), so every report says which request caused it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio

from taskforge import (
    Enqueueing,
    JobContext,
    Middleware,
    RunOutcome,
    Settings,
    Taskforge,
    Worker,
)

os.environ.setdefault("REDIS_URL", "memory://error-reporting")
app = Taskforge(Settings.from_env(prefix=os.environ.get("TASKFORGE_PREFIX", "errors-demo")))

#: Set by your web framework per request; the producer copies it into the job's headers.
request_id: ContextVar[str] = ContextVar("request_id", default="-")


@dataclass(frozen=True)
class ErrorReport:
    """What an error tracker needs about one failed attempt."""

    exception: BaseException | None
    error: str
    tags: dict[str, str]
    final: bool  # True when the job was dead-lettered, False when it will be retried


class ErrorReporter(Middleware):
    """Sends every failed attempt to ``report``; the job's outcome never depends on it."""

    def __init__(self, report: Callable[[ErrorReport], Any]):
        self.report = report

    def on_enqueue(self, job: Enqueueing) -> None:
        job.headers["request_id"] = request_id.get()

    def on_retry(self, ctx: JobContext, outcome: RunOutcome) -> None:
        self._send(ctx, outcome, final=False)

    def on_dead(self, ctx: JobContext, outcome: RunOutcome) -> None:
        self._send(ctx, outcome, final=True)

    def _send(self, ctx: JobContext, outcome: RunOutcome, *, final: bool) -> None:
        tags = {
            "job_id": ctx.job.id,
            "task": ctx.job.task,
            "queue": ctx.job.queue,
            "attempt": str(ctx.attempt),
            "request_id": ctx.job.headers.get("request_id", "-"),
        }
        self.report(
            ErrorReport(outcome.exception, f"{outcome.error_type}: {outcome.error}", tags, final)
        )


def print_report(report: ErrorReport) -> None:
    kind = "DEAD" if report.final else "retry"
    t = report.tags
    print(
        f"[{kind}] {report.error} task={t['task']} attempt={t['attempt']} "
        f"request={t['request_id']} exception={type(report.exception).__name__}"
    )


app.add_middleware(ErrorReporter(print_report))


@app.task(name="billing.charge", max_retries=1, retry_backoff=0.05)
def charge(amount_cents: int) -> str:
    if amount_cents < 0:
        raise ValueError(f"cannot charge {amount_cents} cents")
    return "charged"


async def main() -> None:
    request_id.set("req-42")
    good = await charge.adelay(500)
    bad = await charge.adelay(-1)
    worker = Worker(app.settings, app.registry, burst=True, middleware=app.middleware)
    await worker.run()
    print(f"good: {(await app.client.arecord('default', good.id)).status}")
    print(f"bad: {(await app.client.arecord('default', bad.id)).status}")


if __name__ == "__main__":
    anyio.run(main)
