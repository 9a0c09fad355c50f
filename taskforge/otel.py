"""OpenTelemetry for taskforge (the ``otel`` extra): traces across ``.delay()`` and the worker,
and job metrics through the OTel metrics API.

``app.add_middleware(OpenTelemetry())`` on the app that producers and workers share:

* ``.delay()`` opens a PRODUCER span ``create <queue>`` and injects its context into the job's
  headers (with the configured propagators: W3C ``traceparent`` by default);
* each attempt in the worker runs in a CONSUMER span ``process <queue>``, a child of the create
  span and linked to it, so every attempt (and the task's own spans) sits in the producer's
  trace. Attributes follow the OpenTelemetry messaging conventions (``messaging.system``,
  ``messaging.operation.type``/``.name``, ``messaging.destination.name``,
  ``messaging.message.id``) plus ``taskforge.task.name``, ``taskforge.job.attempt`` and
  ``taskforge.job.outcome``; a failed attempt records its exception and ``error.type``.
* metrics: ``messaging.client.consumed.messages`` (counter, per task, queue and outcome),
  ``messaging.process.duration`` (histogram, s) and ``taskforge.queue.depth`` (gauge per queue
  and state, read from Redis when the SDK collects).

Importing :mod:`taskforge` never imports OpenTelemetry; this module does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from taskforge.context import JobContext
from taskforge.middleware import Enqueueing, Middleware, RunOutcome

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "taskforge.otel needs OpenTelemetry: pip install 'taskforge[otel]' "
        "(opentelemetry-api, plus opentelemetry-sdk or your vendor's distribution)"
    ) from exc

from taskforge.errors import BrokerError
from taskforge.job import PRIORITY_ORDER
from taskforge.protocol.brokers import SyncBroker

if TYPE_CHECKING:
    from taskforge.settings import Settings
    from taskforge.worker import Worker

log = logging.getLogger(__name__)

#: ``messaging.system``: taskforge is not in the conventions' list of well-known systems.
SYSTEM = "taskforge"
_SCOPE = "taskforge"


class OpenTelemetry(Middleware):
    """Traces and metrics for every job (see the module docstring).

    Providers default to the global ones (``trace.set_tracer_provider``...); ``propagator``
    defaults to the globally configured one.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ):
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        self._meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._propagator = propagator
        self._processed = self._meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Jobs whose attempt ended in this worker, by outcome",
        )
        self._duration = self._meter.create_histogram(
            "messaging.process.duration", unit="s", description="Duration of one attempt"
        )
        self._running: dict[tuple[str, str], tuple[Span, object]] = {}
        self._depth_of: tuple[Settings, list[str]] | None = None  # set by the worker's start
        self._depth_broker: SyncBroker | None = None
        self._meter.create_observable_gauge(
            "taskforge.queue.depth",
            callbacks=[self._observe_depth],
            unit="{job}",
            description="Jobs in each queue by state (ready, scheduled, inflight, dead)",
        )

    # ------------------------------------------------------------------ producer

    def on_enqueue(self, job: Enqueueing) -> None:
        """Open and close the ``create`` span; put its context in the job's headers."""
        attributes = _base(job.queue, job.job_id, job.task, "create")
        with self._tracer.start_as_current_span(
            f"create {job.queue}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            self._inject(job.headers)

    def _inject(self, headers: dict[str, str]) -> None:
        if self._propagator is not None:
            self._propagator.inject(headers)
        else:
            propagate.inject(headers)

    # ------------------------------------------------------------------ worker

    def before_run(self, ctx: JobContext) -> None:
        """Start the attempt's ``process`` span and make it current for the task."""
        job = ctx.job
        parent = self._extract(job.headers)
        producer = trace.get_current_span(parent).get_span_context()
        links = [Link(producer)] if producer.is_valid else []
        attributes = _base(job.queue, job.id, job.task, "process")
        attributes["taskforge.job.attempt"] = ctx.attempt
        span = self._tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        self._running[(job.id, ctx.token)] = (span, token)

    def _extract(self, headers: dict[str, str]) -> otel_context.Context:
        if self._propagator is not None:
            return self._propagator.extract(headers)
        return propagate.extract(headers)

    def after_run(self, ctx: JobContext, outcome: RunOutcome) -> None:
        """End the span with the outcome; count the attempt and record its duration."""
        job = ctx.job
        labels: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": job.queue,
            "messaging.operation.name": "process",
            "taskforge.task.name": job.task,
            "taskforge.job.outcome": outcome.status,
        }
        if outcome.failed and outcome.error_type:
            labels["error.type"] = outcome.error_type
        self._processed.add(1, labels)
        self._duration.record(outcome.duration_s, labels)
        running = self._running.pop((job.id, ctx.token), None)
        if running is None:
            return
        span, token = running
        _finish(span, outcome)
        otel_context.detach(token)  # type: ignore[arg-type]

    def on_worker_start(self, worker: Worker) -> None:
        """Point the queue-depth gauge at the worker's queues."""
        self._depth_of = (worker.settings, list(worker.queues))

    def on_worker_stop(self, worker: Worker) -> None:
        """Stop the gauge and close the connection it reads with."""
        self._depth_of = None
        if self._depth_broker is not None:
            self._depth_broker.close()
            self._depth_broker = None

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        # Runs in the SDK's collection (a reader thread or an explicit collect), never on the
        # worker's loop: a blocking read of its own connection is fine there.
        target = self._depth_of
        if target is None:
            return []
        settings, queues = target
        if self._depth_broker is None:
            self._depth_broker = SyncBroker(settings)
        return list(_depths(self._depth_broker, queues))


def _base(queue: str, job_id: str, task: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
        "taskforge.task.name": task,
    }


def _finish(span: Span, outcome: RunOutcome) -> None:
    span.set_attribute("taskforge.job.outcome", outcome.status)
    if outcome.retry_in_s is not None:
        span.set_attribute("taskforge.job.retry_in_s", outcome.retry_in_s)
    if outcome.failed:
        span.set_attribute("error.type", outcome.error_type or "Exception")
        if outcome.exception is not None:
            span.record_exception(outcome.exception)
        else:  # raised in a pool process: only its description came back
            span.add_event(
                "exception",
                {
                    "exception.type": outcome.error_type or "",
                    "exception.message": outcome.error or "",
                    "exception.stacktrace": outcome.traceback or "",
                },
            )
        span.set_status(Status(StatusCode.ERROR, f"{outcome.error_type}: {outcome.error}"))
    span.end()


def _depths(broker: SyncBroker, queues: list[str]) -> Iterable[Observation]:
    for queue in queues:
        try:
            counts = broker.run(broker.ops.counts(queue))
        except BrokerError as exc:  # a missed sample, not a failed collection
            log.warning("queue depth of %r not read: %s", queue, exc)
            continue
        ready = sum(counts.ready.get(p, 0) for p in PRIORITY_ORDER)
        for state, value in (
            ("ready", ready),
            ("scheduled", counts.scheduled),
            ("inflight", counts.inflight),
            ("dead", counts.dead),
        ):
            attributes = {"messaging.destination.name": queue, "taskforge.queue.state": state}
            yield Observation(value, attributes)


__all__ = ["SYSTEM", "OpenTelemetry"]
