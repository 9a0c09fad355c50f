"""Worker metrics: counters and histograms, and a real scrape parsed as Prometheus text."""

from __future__ import annotations

import math
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from taskforge import Call, Settings, Taskforge, current_job
from taskforge.metrics import RUN_BUCKETS_S, Histogram, MetricsExporter, WorkerMetrics
from tests.support.redis_server import free_port

tasks = Taskforge()


@tasks.task(name="m.ok")
def ok() -> str:
    """Succeeds."""
    return "ok"


@tasks.task(name="m.boom", max_retries=0)
def boom() -> None:
    """Dies at once."""
    raise RuntimeError("boom")


@tasks.task(name="m.flaky", max_retries=1, retry_backoff=0)
def flaky() -> str:
    """Fails its first attempt, succeeds on the retry."""
    if current_job().attempt == 1:
        raise RuntimeError("first time")
    return "second time"


# --------------------------------------------------------------------------- a strict parser

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, suffix: str = "", **labels: str) -> float:
        """The one sample ``name + suffix`` with exactly these labels."""
        name = self.name + suffix
        (found,) = [v for n, lb, v in self.samples if n == name and lb == labels]
        return found


def parse_prometheus(text: str) -> dict[str, Family]:
    """Parse the text format strictly: HELP then TYPE once per family, its samples grouped
    right after it, valid names/labels/values, cumulative histogram buckets ending at +Inf."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    current: Family | None = None
    help_text = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            assert name not in families, f"family {name} appears twice (samples not grouped)"
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in _SUFFIXES
            current = families[name] = Family(name, kind, help_text)
        else:
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            assert current is not None, f"sample before any TYPE: {line!r}"
            sample, raw_labels, raw_value = m.groups()
            assert sample in {current.name + s for s in _SUFFIXES[current.type]}, (
                f"{sample} outside its family {current.name}"
            )
            labels = dict((k, v) for k, v in _LABEL.findall(raw_labels or ""))
            current.samples.append((sample, labels, float(raw_value)))
    for fam in families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam: Family) -> None:
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for name, labels, value in fam.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        if name.endswith("_bucket"):
            series.setdefault(key, []).append((float(labels["le"]), value))
        elif name.endswith("_count"):
            counts[key] = value
    for key, buckets in series.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf
        values = [v for _, v in buckets]
        assert values == sorted(values), "buckets must be cumulative"
        assert values[-1] == counts[key]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(response.read().decode())


def wait_until(predicate: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except (urllib.error.URLError, ConnectionError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.05)


def with_options(call: Call, **options: Any) -> Call:
    return replace(call, options=replace(call.options, **options))


# --------------------------------------------------------------------------- units


def test_histogram_puts_a_value_on_a_bound_into_that_bucket() -> None:
    h = Histogram(RUN_BUCKETS_S)

    for value in (0.005, 0.006, 1.0, 1e9):
        h.observe(value)

    cumulative = dict(h.cumulative())
    assert cumulative["0.005"] == 1
    assert cumulative["0.01"] == 2
    assert cumulative["1"] == 3
    assert cumulative["+Inf"] == 4 == h.count
    assert h.total == pytest.approx(1e9 + 1.011)


def test_worker_metrics_feed_minute_counters_until_taken() -> None:
    m = WorkerMetrics()

    for outcome in ("succeeded", "succeeded", "retried", "dead", "handed_back"):
        m.job_finished("q", outcome, 0.01)
    taken = m.take_minute_counts()
    m.give_back_minute_counts(taken)

    assert taken == {"q": {"done": 2, "retried": 1, "failed": 2, "dead": 1}}
    assert m.take_minute_counts() == taken
    assert m.take_minute_counts() == {}
    assert m.outcomes[("q", "handed_back")] == 1
    assert m.run_s["q"].count == 4  # handed-back jobs did not run to an end


def test_recording_an_outcome_costs_microseconds() -> None:
    m = WorkerMetrics()
    n = 20_000

    started = time.perf_counter()
    for i in range(n):
        m.job_finished("default", "succeeded", i * 1e-4)
        m.job_started("default", 0.01)
    per_job_us = (time.perf_counter() - started) / n * 1e6

    assert per_job_us < 50, f"{per_job_us:.1f} us per job"


# --------------------------------------------------------------------------- a real scrape


def test_a_running_workers_scrape_parses_as_prometheus_text(
    worker_process: Callable[..., subprocess.Popen[bytes]], redis_url: str, prefix: str
) -> None:
    port = free_port()
    worker_process(
        "tests.operations.test_metrics:tasks", "--metrics-port", str(port), "--log-level", "ERROR"
    )
    app = Taskforge(Settings(redis_url=redis_url, prefix=prefix))
    # Options travel with the job: a call by name carries them itself.
    calls = [app.call("m.ok") for _ in range(3)]
    calls.append(with_options(app.call("m.boom"), max_retries=0))
    calls.append(with_options(app.call("m.flaky"), max_retries=1, retry_backoff=0))
    delayed = replace(app.call("m.ok"), delay_s=600)

    app.enqueue_many([*calls, delayed])
    app.client.close()

    def finished() -> dict[str, Family] | None:
        fams = parse_prometheus(scrape(port))
        done = fams["taskforge_jobs_processed_total"].value(queue="default")
        return fams if done == 6 else None

    fams = wait_until(finished)

    def total(name: str) -> float:
        return fams[f"taskforge_jobs_{name}_total"].value(queue="default")

    assert fams["taskforge_jobs_processed_total"].type == "counter"
    assert (total("succeeded"), total("retried"), total("dead"), total("failed")) == (4, 1, 1, 2)
    assert fams["taskforge_job_run_seconds"].value("_bucket", queue="default", le="+Inf") == 6
    assert fams["taskforge_job_wait_seconds"].value("_bucket", queue="default", le="+Inf") == 5
    ready = fams["taskforge_queue_ready"]
    assert {p: ready.value(queue="default", priority=p) for p in ("high", "normal", "low")} == {
        "high": 0, "normal": 0, "low": 0,
    }  # fmt: skip
    assert fams["taskforge_queue_scheduled"].value(queue="default") == 1
    assert fams["taskforge_queue_dead"].value(queue="default") == 1
    assert fams["taskforge_queue_inflight"].value(queue="default") == 0
    assert fams["taskforge_worker_concurrency"].value() == 10
    assert fams["taskforge_redis_up"].value() == 1
    assert fams["taskforge_redis_ops_per_sec"].value() >= 0
    assert fams["taskforge_redis_evicted_keys_total"].type == "counter"
    assert fams["taskforge_redis_used_memory_bytes"].value() > 0
    assert 0 <= fams["taskforge_redis_keyspace_hit_ratio"].value() <= 1


def test_a_scrape_while_redis_is_down_says_so_and_keeps_the_counters() -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", connect_retries=0)
    metrics = WorkerMetrics()
    metrics.job_finished("default", "succeeded", 0.2)
    exporter = MetricsExporter(settings, metrics, ["default"], port=0, host="127.0.0.1").start()
    try:
        text = scrape(exporter.port)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/nope", timeout=5)
    finally:
        exporter.stop()

    fams = parse_prometheus(text)
    assert fams["taskforge_redis_up"].value() == 0
    assert fams["taskforge_jobs_succeeded_total"].value(queue="default") == 1
    assert fams["taskforge_job_run_seconds"].value("_bucket", queue="default", le="0.25") == 1
    assert "taskforge_queue_ready" not in fams or not fams["taskforge_queue_ready"].samples
    assert missing.value.code == 404
