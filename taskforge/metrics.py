"""Worker metrics in the Prometheus text format, served by a stdlib HTTP server (opt-in).

The worker counts outcomes and observes run and wait times into :class:`WorkerMetrics` with plain
int/float arithmetic on its event loop: no locks, no I/O. Queue depths and Redis figures are not
tracked at all; they are read from Redis when someone scrapes ``/metrics``, in the exporter's own
thread and over its own blocking connection, so a slow scrape never touches the worker's loop.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskforge.errors import BrokerError
from taskforge.protocol.brokers import SyncBroker
from taskforge.protocol.records import QueueCounts
from taskforge.settings import Settings

log = logging.getLogger(__name__)

#: Upper bounds (s) of the run-time histogram buckets.
RUN_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
#: Upper bounds (s) of the wait-time histogram buckets.
WAIT_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip

#: Outcome names the worker reports, and which of them count as a failed attempt.
OUTCOMES = ("succeeded", "retried", "dead", "cancelled", "handed_back")
FAILED = frozenset({"retried", "dead"})

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class Histogram:
    """A fixed-bucket histogram; ``counts[i]`` holds observations in bucket i (not cumulative)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Add one observation (``le`` semantics: a value equal to a bound falls in it)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == math.inf else _num(bound), running))
        return out


class WorkerMetrics:
    """What one worker observed since it started. Mutated only from the worker's event loop.

    ``minute_counts`` collects outcome counts per queue until the worker writes them to Redis
    (the per-minute counters behind ``taskforge queues``) and :meth:`take_minute_counts` empties
    it.
    """

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], int] = {}
        self.run_s: dict[str, Histogram] = {}
        self.wait_s: dict[str, Histogram] = {}
        self.minute_counts: dict[str, dict[str, int]] = {}

    def job_started(self, queue: str, wait_s: float) -> None:
        """Observe how long a job waited between being enqueued and starting."""
        h = self.wait_s.get(queue)
        if h is None:
            h = self.wait_s[queue] = Histogram(WAIT_BUCKETS_S)
        h.observe(max(0.0, wait_s))

    def job_finished(self, queue: str, outcome: str, run_s: float) -> None:
        """Count one recorded outcome (one of :data:`OUTCOMES`) and its run time."""
        key = (queue, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        if outcome == "handed_back":
            return
        h = self.run_s.get(queue)
        if h is None:
            h = self.run_s[queue] = Histogram(RUN_BUCKETS_S)
        h.observe(run_s)
        bucket = self.minute_counts.setdefault(queue, {})
        name = "done" if outcome == "succeeded" else outcome
        bucket[name] = bucket.get(name, 0) + 1
        if outcome in FAILED:
            bucket["failed"] = bucket.get("failed", 0) + 1

    def take_minute_counts(self) -> dict[str, dict[str, int]]:
        """Hand over (and forget) the counts gathered since the last call."""
        counts, self.minute_counts = self.minute_counts, {}
        return counts

    def give_back_minute_counts(self, counts: dict[str, dict[str, int]]) -> None:
        """Put back counts whose write failed, to be written with the next batch."""
        for queue, named in counts.items():
            bucket = self.minute_counts.setdefault(queue, {})
            for name, n in named.items():
                bucket[name] = bucket.get(name, 0) + n


# --------------------------------------------------------------------------- text format


def _num(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Exposition:
    """Builds one Prometheus text exposition: each family's HELP and TYPE, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._seen: set[str] = set()

    def family(self, name: str, kind: str, help_text: str) -> None:
        """Declare a metric family (once; later declarations are ignored)."""
        if name not in self._seen:
            self._seen.add(name)
            self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        """One sample line."""
        self._lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def histogram(self, name: str, help_text: str, h: Histogram, **labels: str) -> None:
        """A histogram's ``_bucket``, ``_sum`` and ``_count`` lines."""
        self.family(name, "histogram", help_text)
        for le, n in h.cumulative():
            self.sample(f"{name}_bucket", n, **labels, le=le)
        self.sample(f"{name}_sum", h.total, **labels)
        self.sample(f"{name}_count", h.count, **labels)

    def text(self) -> str:
        """The exposition, newline-terminated."""
        return "\n".join(self._lines) + "\n"


_COUNTERS = (
    ("processed", "jobs whose attempt ended (succeeded, retried, dead or cancelled)"),
    ("succeeded", "jobs that succeeded"),
    ("failed", "attempts that failed (retried + dead)"),
    ("retried", "failed attempts scheduled for a retry"),
    ("dead", "jobs dead-lettered"),
    ("cancelled", "jobs cancelled while running"),
    ("handed_back", "jobs handed back unrun on shutdown"),
)


def render_worker(out: Exposition, metrics: WorkerMetrics, queues: Sequence[str]) -> None:
    """Job counters and the run/wait histograms of one worker."""
    outcomes = metrics.outcomes.copy()  # one C-level copy: safe against the loop's writes
    for name, help_text in _COUNTERS:
        out.family(f"taskforge_jobs_{name}_total", "counter", help_text)
        for queue in queues:
            n = _outcome_total(outcomes, queue, name)
            out.sample(f"taskforge_jobs_{name}_total", n, queue=queue)
    for queue, h in metrics.run_s.copy().items():
        out.histogram("taskforge_job_run_seconds", "time jobs ran, s", h, queue=queue)
    for queue, h in metrics.wait_s.copy().items():
        out.histogram(
            "taskforge_job_wait_seconds", "enqueue to start (first attempts), s", h, queue=queue
        )


def _outcome_total(outcomes: dict[tuple[str, str], int], queue: str, name: str) -> int:
    if name == "processed":
        return sum(outcomes.get((queue, o), 0) for o in OUTCOMES if o != "handed_back")
    if name == "failed":
        return sum(outcomes.get((queue, o), 0) for o in FAILED)
    return outcomes.get((queue, name), 0)


def render_queues(out: Exposition, counts: Iterable[QueueCounts]) -> None:
    """Queue depth gauges: ready per priority, scheduled, in flight, dead."""
    counts = list(counts)
    # A family's samples must follow its TYPE line as one group.
    out.family("taskforge_queue_ready", "gauge", "jobs ready to run, per priority")
    for c in counts:
        for priority, n in c.ready.items():
            out.sample("taskforge_queue_ready", n, queue=c.queue, priority=priority.value)
    for name, help_text in (
        ("scheduled", "jobs waiting for their time (delay, retry)"),
        ("inflight", "jobs leased to a worker"),
        ("dead", "jobs in the dead-letter set"),
    ):
        out.family(f"taskforge_queue_{name}", "gauge", help_text)
        for c in counts:
            out.sample(f"taskforge_queue_{name}", getattr(c, name), queue=c.queue)


_INFO_GAUGES = (
    ("instantaneous_ops_per_sec", "taskforge_redis_ops_per_sec", "gauge", "Redis commands/s"),
    ("used_memory", "taskforge_redis_used_memory_bytes", "gauge", "Redis used memory, bytes"),
    ("maxmemory", "taskforge_redis_maxmemory_bytes", "gauge", "Redis maxmemory (0: no limit)"),
    ("connected_clients", "taskforge_redis_connected_clients", "gauge", "Redis clients"),
    ("evicted_keys", "taskforge_redis_evicted_keys_total", "counter", "keys Redis evicted"),
    ("keyspace_hits", "taskforge_redis_keyspace_hits_total", "counter", "Redis keyspace hits"),
    ("keyspace_misses", "taskforge_redis_keyspace_misses_total", "counter", "keyspace misses"),
)


def render_redis(out: Exposition, info: dict[str, Any] | None) -> None:
    """Redis figures from ``INFO`` (``taskforge_redis_up 0`` when it did not answer)."""
    out.family("taskforge_redis_up", "gauge", "1 when Redis answered this scrape")
    out.sample("taskforge_redis_up", 1 if info is not None else 0)
    if info is None:
        return
    for field_name, name, kind, help_text in _INFO_GAUGES:
        if field_name in info:
            out.family(name, kind, help_text)
            out.sample(name, float(info[field_name]))
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    out.family("taskforge_redis_keyspace_hit_ratio", "gauge", "hits / (hits + misses)")
    out.sample("taskforge_redis_keyspace_hit_ratio", hits / (hits + misses) if hits + misses else 0)


def _summed(infos: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One server's ``INFO``, or a cluster's: its primaries' figures added up."""
    if len(infos) == 1:
        return next(iter(infos.values()))
    fields = [f for f, *_ in _INFO_GAUGES] + ["keyspace_hits", "keyspace_misses"]
    return {f: sum(int(info.get(f, 0)) for info in infos.values()) for f in fields}


# --------------------------------------------------------------------------- the exporter


class MetricsExporter:
    """Serves ``GET /metrics`` from a daemon thread (``ThreadingHTTPServer``, no dependency).

    ``extra`` adds worker gauges (running jobs, concurrency) at scrape time. Port 0 picks a free
    port; :attr:`port` tells which.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        queues: Sequence[str],
        *,
        port: int,
        host: str = "0.0.0.0",
        extra: Callable[[], dict[str, float]] | None = None,
    ):
        self.settings = settings
        self.metrics = metrics
        self.queues = list(queues)
        self.extra = extra
        self._broker: SyncBroker | None = None
        self._lock = threading.Lock()  # scrapes only; the worker's loop never takes it
        exporter = self
        # Imported here, not with the module: http.server (with http.client, email, html,
        # socketserver) costs ~1.5 MiB and tens of ms, and only a worker started with a metrics
        # port serves HTTP (an optional subsystem; WorkerMetrics itself needs none of it).
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404, "try /metrics")
                    return
                body = exporter.scrape().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="taskforge-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def start(self) -> MetricsExporter:
        """Start serving in the background."""
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", self._server.server_address[0], self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the scrape connection."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            if self._broker is not None:
                self._broker.close()
                self._broker = None

    def scrape(self) -> str:
        """One exposition: worker counters, then queue depths and Redis figures read now."""
        out = Exposition()
        render_worker(out, self.metrics, self.queues)
        for name, value in (self.extra() if self.extra else {}).items():
            out.family(f"taskforge_worker_{name}", "gauge", f"this worker's {name}")
            out.sample(f"taskforge_worker_{name}", value)
        with self._lock:
            counts, info = self._read_redis()
        render_queues(out, counts)
        render_redis(out, info)
        return out.text()

    def _read_redis(self) -> tuple[list[QueueCounts], dict[str, Any] | None]:
        if self._broker is None:
            self._broker = SyncBroker(self.settings)
        broker = self._broker
        try:
            counts = [broker.run(broker.ops.counts(q)) for q in self.queues]
            info = None if self.settings.is_memory else _summed(broker.run(broker.ops.node_infos()))
        except BrokerError as exc:
            log.warning("metrics scrape could not read Redis: %s", exc)
            return [], None
        return counts, info if info is not None else {}


__all__ = [
    "CONTENT_TYPE",
    "FAILED",
    "OUTCOMES",
    "RUN_BUCKETS_S",
    "WAIT_BUCKETS_S",
    "Exposition",
    "Histogram",
    "MetricsExporter",
    "WorkerMetrics",
    "render_queues",
    "render_redis",
    "render_worker",
]
