"""One job's trace, printed as a tree: the producer's span and one span per attempt.

    pip install 'taskforge[otel]' opentelemetry-sdk
    python examples/otel_trace.py                       # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/otel_trace.py

The spans go to the SDK's in-memory exporter so they can be printed here; in production you
would add a ``BatchSpanProcessor(OTLPSpanExporter())`` to the provider instead (and set the
global providers rather than passing them).
"""

from __future__ import annotations

import os

import anyio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskforge import Settings, Taskforge, Worker, current_job
from taskforge.otel import OpenTelemetry

os.environ.setdefault("REDIS_URL", "memory://otel-trace")
app = Taskforge(Settings.from_env(prefix=os.environ.get("TASKFORGE_PREFIX", "otel-demo")))
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
app.add_middleware(OpenTelemetry(tracer_provider=provider))
tracer = provider.get_tracer("shop")


@app.task(name="shop.charge", max_retries=2, retry_backoff=0)
def charge(amount_cents: int) -> str:
    with tracer.start_as_current_span("call payment API"):
        if current_job().attempt == 1:
            raise ConnectionError("payment API timed out")
    return f"charged {amount_cents}"


def describe(span: ReadableSpan) -> str:
    a = span.attributes or {}
    text = f"{span.name}  [{span.kind.name.lower()}]"
    if "taskforge.job.attempt" in a:
        text += f"  attempt={a['taskforge.job.attempt']} outcome={a['taskforge.job.outcome']}"
    elif "taskforge.task.name" in a:
        text += f"  task={a['taskforge.task.name']}"
    if span.status.status_code.name == "ERROR":
        text += f"  ERROR {span.status.description}"
    return text


def print_tree(finished: list[ReadableSpan]) -> None:
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(finished, key=lambda s: s.start_time or 0):
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)

    def walk(span: ReadableSpan, indent: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        print(f"{indent}{branch}{describe(span)}")
        kids = children.get(span.context.span_id if span.context else None, [])
        deeper = indent if root else indent + ("    " if last else "│   ")
        for i, kid in enumerate(kids):
            walk(kid, deeper, i == len(kids) - 1, False)

    (root,) = children[None]
    trace_id = root.context.trace_id if root.context else 0
    print(f"trace {trace_id:032x}")
    walk(root, "", True, True)


async def main() -> None:
    handle = await charge.adelay(500)
    await Worker(app.settings, app.registry, burst=True, middleware=app.middleware).run()
    print(f"result: {await handle.aresult(timeout=5)}")
    print_tree(list(spans.get_finished_spans()))


if __name__ == "__main__":
    anyio.run(main)
