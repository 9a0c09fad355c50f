"""OpenTelemetry middleware: one trace from .delay() through a real worker process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskforge import JobStatus, Taskforge
from tests.support import otel_tasks

StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def app(redis_url: str, prefix: str) -> Iterator[Taskforge]:
    """``tests.support.otel_tasks.app`` on the test Redis and prefix, its producer spans cleared."""
    otel_tasks.app.configure(redis_url=redis_url, prefix=prefix)
    otel_tasks.SPANS.clear()
    yield otel_tasks.app
    otel_tasks.app.client.close()


def run_worker(start: StartWorker, tmp_path: Path) -> dict[str, Any]:
    """Drain the queue with a real worker; returns the spans and metrics it recorded."""
    dump = tmp_path / "telemetry.json"
    proc = start(
        "tests.support.otel_tasks:app", "--burst", env={"TASKFORGE_TEST_TELEMETRY": str(dump)}
    )
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out.decode()
    telemetry: dict[str, Any] = json.loads(dump.read_text())
    return telemetry


def test_producer_and_worker_spans_share_one_trace_with_one_process_span_per_attempt(
    app: Taskforge, worker_process: StartWorker, tmp_path: Path
) -> None:
    handle = otel_tasks.charge.delay(500)
    (create,) = [otel_tasks.span_dict(s) for s in otel_tasks.SPANS.get_finished_spans()]

    spans = run_worker(worker_process, tmp_path)["spans"]

    assert handle.result(timeout=5) == "charged 500"
    processes = [s for s in spans if s["name"] == "process default"]
    assert [p["attributes"]["taskforge.job.attempt"] for p in processes] == [1, 2]
    for p in processes:
        assert p["trace_id"] == create["trace_id"]  # one trace across the two processes
        assert p["parent_id"] == create["span_id"]
        assert p["links"] == [create["span_id"]]
        assert p["kind"] == "CONSUMER"
        assert p["attributes"]["messaging.message.id"] == handle.id
        assert p["attributes"]["messaging.destination.name"] == "default"
        assert p["attributes"]["taskforge.task.name"] == "otel.charge"
    failed, succeeded = processes
    assert failed["status"] == "ERROR" and failed["events"] == ["exception"]
    assert failed["attributes"]["error.type"] == "ConnectionError"
    assert failed["attributes"]["taskforge.job.outcome"] == "retrying"
    assert succeeded["status"] == "UNSET"
    assert succeeded["attributes"]["taskforge.job.outcome"] == "succeeded"
    calls = [s for s in spans if s["name"] == "call payment API"]
    assert [c["parent_id"] for c in calls] == [failed["span_id"], succeeded["span_id"]]
    assert create["kind"] == "PRODUCER"
    assert create["attributes"]["messaging.operation.type"] == "create"
    assert create["attributes"]["messaging.system"] == "taskforge"


def test_worker_metrics_count_attempts_time_them_and_read_queue_depth(
    app: Taskforge, worker_process: StartWorker, tmp_path: Path
) -> None:
    otel_tasks.charge.delay(1)

    metrics = run_worker(worker_process, tmp_path)["metrics"]

    consumed = {
        p["attributes"]["taskforge.job.outcome"]: p["value"]
        for p in metrics["messaging.client.consumed.messages"]
    }
    assert consumed == {"retrying": 1, "succeeded": 1}
    durations = metrics["messaging.process.duration"]
    assert sum(p["count"] for p in durations) == 2
    depth = {
        p["attributes"]["taskforge.queue.state"]: p["value"]
        for p in metrics["taskforge.queue.depth"]
    }
    assert depth == {"ready": 0, "scheduled": 0, "inflight": 0, "dead": 0}


def test_trace_context_travels_in_the_job_headers(app: Taskforge) -> None:
    handle = otel_tasks.charge.delay(2)

    record = app.client.record("default", handle.id)

    assert record.status == JobStatus.QUEUED
    assert record.job is not None
    traceparent = record.job.headers["traceparent"]
    (create,) = otel_tasks.SPANS.get_finished_spans()
    assert create.context is not None
    assert traceparent.split("-")[1:3] == [
        f"{create.context.trace_id:032x}", f"{create.context.span_id:016x}"
    ]  # fmt: skip


#: Run in a fresh interpreter where OpenTelemetry cannot be imported (as without the extra).
_WITHOUT_OTEL = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ImportError("not installed: " + name)
sys.meta_path.insert(0, Block())
import taskforge, taskforge.cli, taskforge.worker, taskforge.worker.pool
print("core ok")
try:
    import taskforge.otel
except ImportError as exc:
    print(exc)
"""


def test_taskforge_imports_without_opentelemetry_and_the_extra_says_what_to_install() -> None:
    # (redis-py 8 imports opentelemetry itself when it is installed; taskforge never needs it.)
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OTEL], capture_output=True, text=True, check=True
    )

    core, otel = out.stdout.splitlines()
    assert core == "core ok"
    assert otel.startswith("taskforge.otel needs OpenTelemetry: pip install 'taskforge[otel]'")


def test_plain_import_of_taskforge_does_not_load_the_otel_module() -> None:
    code = "import sys, taskforge, taskforge.cli; print('taskforge.otel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "False"


def test_otel_example_prints_one_trace_with_an_attempt_per_retry() -> None:
    from tests.features.test_examples import ROOT, run_example

    out = run_example(ROOT / "examples" / "otel_trace.py")

    lines = out.splitlines()
    assert lines[0] == "result: charged 500"
    assert lines[1].startswith("trace ")
    assert lines[2] == "create default  [producer]  task=shop.charge"
    assert lines[3].startswith("├── process default  [consumer]  attempt=1 outcome=retrying  ERROR")
    assert lines[4].startswith("│   └── call payment API")
    assert lines[5] == "└── process default  [consumer]  attempt=2 outcome=succeeded"
    assert lines[6] == "    └── call payment API  [internal]"
