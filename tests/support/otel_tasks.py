"""Tasks traced with OpenTelemetry: ``taskforge worker tests.support.otel_tasks:app``.

Producer (the test process) and worker (a subprocess) each record into the SDK's in-memory
exporters; with ``TASKFORGE_TEST_TELEMETRY=<path>`` the worker writes what it recorded there as
JSON when it stops, so a test can put both halves of the trace side by side.
"""

from __future__ import annotations

import json
import os
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from taskforge import Middleware, Taskforge, Worker, current_job
from taskforge.otel import OpenTelemetry

SPANS = InMemorySpanExporter()
TRACER_PROVIDER = TracerProvider()
TRACER_PROVIDER.add_span_processor(SimpleSpanProcessor(SPANS))
METRICS = InMemoryMetricReader()
METER_PROVIDER = MeterProvider(metric_readers=[METRICS])

app = Taskforge()
app.add_middleware(
    OpenTelemetry(
        tracer_provider=TRACER_PROVIDER,
        meter_provider=METER_PROVIDER,
        propagator=TraceContextTextMapPropagator(),
    )
)


def span_dict(span: ReadableSpan) -> dict[str, Any]:
    """The parts of a finished span the tests look at (ids in hex)."""
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
    }


def metric_points() -> dict[str, list[dict[str, Any]]]:
    """Each metric's data points: attributes and value (sum, gauge) or count (histogram)."""
    data = METRICS.get_metrics_data()
    points: dict[str, list[dict[str, Any]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    value = getattr(p, "value", None)
                    count = getattr(p, "count", None)
                    entry = {"attributes": dict(p.attributes or {}), "value": value, "count": count}
                    points.setdefault(metric.name, []).append(entry)
    return points


class DumpTelemetry(Middleware):
    """Writes the worker's spans and metrics to ``$TASKFORGE_TEST_TELEMETRY`` on stop."""

    def on_worker_stop(self, worker: Worker) -> None:
        path = os.environ.get("TASKFORGE_TEST_TELEMETRY")
        if path:
            spans = [span_dict(s) for s in SPANS.get_finished_spans()]
            with open(path, "w") as f:
                json.dump({"spans": spans, "metrics": metric_points()}, f)


# Registered after OpenTelemetry, so its on_worker_stop runs first (stop hooks run in reverse):
# the queue-depth gauge still reads Redis then.
app.add_middleware(DumpTelemetry())


@app.task(name="otel.charge", max_retries=2, retry_backoff=0)
def charge(amount_cents: int) -> str:
    """Fail the first attempt; the task's own span nests under the attempt's process span."""
    with TRACER_PROVIDER.get_tracer("shop").start_as_current_span("call payment API"):
        if current_job().attempt == 1:
            raise ConnectionError("payment API timed out")
    return f"charged {amount_cents}"


@app.task(name="otel.crunch", max_retries=1, retry_backoff=0)
def crunch() -> dict[str, Any]:
    """For a process-pool worker: fail the first attempt in the child; on the second, say where
    the task ran and which span its own span nests under."""
    with TRACER_PROVIDER.get_tracer("shop").start_as_current_span("crunch") as span:
        if current_job().attempt == 1:
            raise ValueError("bad batch")
        ctx, parent = span.get_span_context(), span.parent  # type: ignore[attr-defined]
        return {
            "pid": os.getpid(),
            "trace_id": f"{ctx.trace_id:032x}",
            "parent_id": f"{parent.span_id:016x}" if parent else None,
        }
