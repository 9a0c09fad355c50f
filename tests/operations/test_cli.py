"""The operator's CLI against a real Redis and real workers: contents, JSON shapes, exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis
from typer.testing import CliRunner, Result

from taskforge import JobPriority, Settings, Taskforge, Worker
from taskforge import cli as cli_module
from taskforge.cli import cli, parse_duration
from taskforge.cli import dead as cli_dead
from taskforge.driver.nodes import server_warnings
from taskforge.protocol.brokers import SyncBroker
from taskforge.protocol.ops import Ops
from tests.support.redis_server import RedisServer, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------- tasks


def add(a: int, b: int = 0) -> int:
    """Adds."""
    return a + b


def explode(path: str = "/var") -> None:
    """Always fails."""
    raise ValueError(f"disk full on {path}")


def register(app: Taskforge) -> Taskforge:
    """The tasks these tests run, on ``app``."""
    app.task(name="ops.add")(add)
    app.task(name="ops.explode", max_retries=0)(explode)
    app.task(name="ops.later")(add)  # only workers given this app know it
    return app


#: What `taskforge worker tests.operations.test_cli:tasks` runs (settings from the environment).
tasks = register(Taskforge())


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def env(redis_url: str, prefix: str) -> dict[str, str]:
    """The environment a CLI invocation sees: the test Redis and this test's prefix."""
    return {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix, "COLUMNS": "220"}


@pytest.fixture
def run(env: dict[str, str]) -> Callable[..., Result]:
    """Invoke the CLI in-process: ``run("queues", "--json")``."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.05)


@pytest.fixture
def burst(settings_factory: Callable[..., Settings]) -> Callable[..., Any]:
    """Run an in-process worker in burst mode; ``known=False`` leaves out ``ops.later``."""

    def go(*, known: bool = True, queues: tuple[str, ...] = ("default",)) -> Any:
        app = register(Taskforge(settings_factory()))
        if not known:
            app = Taskforge(settings_factory())
            app.task(name="ops.add")(add)
            app.task(name="ops.explode", max_retries=0)(explode)
        w = Worker(app.settings, app.registry, queues=queues, burst=True, block_s=0.2)
        return anyio.run(w.run)

    return go


def enqueue(run: Callable[..., Result], task: str, *extra: str) -> str:
    out = as_json(run("enqueue", task, "--json", *extra))
    return str(out["id"])


# --------------------------------------------------------------------------- queues


def test_queues_shows_ready_per_priority_scheduled_and_dead(run: Callable[..., Result]) -> None:
    for _ in range(2):
        enqueue(run, "ops.add", "--args", "[1, 2]", "--priority", "high")
    enqueue(run, "ops.add", "--args", "[1]", "--priority", "low")
    enqueue(run, "ops.add", "--args", "[1]", "--delay", "300")

    rows = as_json(run("queues", "--json"))
    text = run("queues").stdout

    (row,) = rows
    assert row["queue"] == "default"
    assert row["ready"] == {"high": 2, "normal": 0, "low": 1}
    assert (row["ready_total"], row["scheduled"], row["inflight"], row["dead"]) == (3, 1, 0, 0)
    assert set(row["recent"]) == {
        "window_minutes", "done", "failed", "dead", "done_per_min", "failed_per_min",
    }  # fmt: skip
    line = next(ln for ln in text.splitlines() if "default" in ln)
    assert [c.strip() for c in line.strip("│┃ ").split("│")][:7] == [
        "default", "2", "0", "1", "1", "0", "0",
    ]  # fmt: skip


def test_queues_counts_jobs_done_and_failed_per_minute(
    run: Callable[..., Result], burst: Callable[..., Any]
) -> None:
    for i in range(4):
        enqueue(run, "ops.add", "--args", f"[{i}]")
    enqueue(run, "ops.explode", "--max-retries", "0")

    burst()
    (row,) = as_json(run("queues", "--json"))

    assert row["recent"]["done"] == 4
    assert row["recent"]["failed"] == 1
    assert row["recent"]["dead"] == 1
    assert row["recent"]["done_per_min"] == pytest.approx(4 / row["recent"]["window_minutes"])
    assert row["dead"] == 1


# --------------------------------------------------------------------------- job and enqueue


def test_enqueue_by_name_runs_with_args_and_kwargs_and_job_shows_result(
    run: Callable[..., Result], burst: Callable[..., Any]
) -> None:
    job_id = enqueue(run, "ops.add", "--args", "[2]", "--kwargs", '{"b": 40}')

    burst()
    record = as_json(run("job", job_id, "--json"))
    text = run("job", job_id).stdout

    assert record["status"] == "succeeded"
    assert record["result"] == 42
    assert record["attempts"] == 1
    assert record["task"] == "ops.add"
    assert record["queue"] == "default"
    assert record["started_ms"] >= record["enqueued_ms"] > 0
    assert {"error", "traceback", "finished_ms", "job"} <= set(record)
    assert "succeeded" in text and "42" in text and job_id in text


def test_job_shows_error_and_traceback_of_a_dead_job(
    run: Callable[..., Result], burst: Callable[..., Any]
) -> None:
    job_id = enqueue(run, "ops.explode", "--kwargs", '{"path": "/srv"}', "--max-retries", "0")

    burst()
    record = as_json(run("job", job_id, "--json"))
    text = run("job", job_id).stdout

    assert record["status"] == "dead"
    assert record["error_type"] == "ValueError"
    assert record["error"] == "disk full on /srv"
    assert "Traceback" in record["traceback"] and "explode" in record["traceback"]
    assert "ValueError: disk full on /srv" in text
    assert "traceback" in text and 'raise ValueError(f"disk full on {path}")' in text


def test_job_that_does_not_exist_exits_1_with_one_line(run: Callable[..., Result]) -> None:
    result = run("job", "no-such-job")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no job 'no-such-job'" in result.stderr


def test_enqueue_with_delay_is_scheduled_and_priority_is_kept(run: Callable[..., Result]) -> None:
    out = as_json(run("enqueue", "ops.add", "--delay", "60", "--priority", "low", "--json"))

    record = as_json(run("job", out["id"], "--json"))

    assert out["status"] == "scheduled" and out["created"] is True
    assert record["status"] == "scheduled"
    assert record["job"]["priority"] == "low"
    assert record["run_at_ms"] - record["enqueued_ms"] == pytest.approx(60_000, abs=50)


@pytest.mark.parametrize(
    "args",
    [
        ("--args", "{not json"),
        ("--args", '{"a": 1}'),
        ("--kwargs", "[1]"),
        ("--priority", "urgent"),
        ("--queue", "bad queue"),
    ],
)
def test_enqueue_refuses_bad_input_with_exit_2(
    run: Callable[..., Result], args: tuple[str, str]
) -> None:
    result = run("enqueue", "ops.add", *args)

    assert result.exit_code == 2, result.output
    assert as_json(run("queues", "--json"))[0]["ready_total"] == 0


# --------------------------------------------------------------------------- dead letters


@pytest.fixture
def dead_jobs(run: Callable[..., Result], burst: Callable[..., Any]) -> dict[str, list[str]]:
    """Three dead ``ops.explode`` jobs and two dead ``ops.later`` ones (unknown to the worker)."""
    boom = [
        enqueue(run, "ops.explode", "--kwargs", f'{{"path": "/d{i}"}}', "--max-retries", "0")
        for i in range(3)
    ]
    later = [enqueue(run, "ops.later", "--args", f"[{i}, 100]") for i in range(2)]
    burst(known=False)
    return {"explode": boom, "later": later}


def test_dead_list_shows_errors_and_filters_by_task_error_and_age(
    run: Callable[..., Result], dead_jobs: dict[str, list[str]]
) -> None:
    everything = as_json(run("dead", "list", "--json"))
    by_task = as_json(run("dead", "list", "--task", "ops.lat*", "--json"))
    by_error = as_json(run("dead", "list", "--error", "DISK FULL ON /d1", "--json"))
    too_old = as_json(run("dead", "list", "--older-than", "1h", "--json"))
    recent = as_json(run("dead", "list", "--newer-than", "1h", "--limit", "2", "--json"))
    text = run("dead", "list").stdout

    assert sorted(d["id"] for d in everything) == sorted(dead_jobs["explode"] + dead_jobs["later"])
    assert {tuple(sorted(d)) for d in everything} == {
        ("age_s", "attempts", "dead_at", "error", "error_type", "id", "queue", "task"),
    }
    assert sorted(d["id"] for d in by_task) == sorted(dead_jobs["later"])
    assert by_task[0]["error_type"] == "UnknownTaskError"
    assert [d["id"] for d in by_error] == [dead_jobs["explode"][1]]
    assert too_old == []
    assert len(recent) == 2
    assert "ValueError: disk full on /d0" in text and dead_jobs["later"][0] in text


def test_dead_list_refuses_a_bad_duration_with_exit_2(run: Callable[..., Result]) -> None:
    result = run("dead", "list", "--older-than", "soon")

    assert result.exit_code == 2
    assert "not a duration" in result.output


def test_dead_show_prints_the_traceback(
    run: Callable[..., Result], dead_jobs: dict[str, list[str]]
) -> None:
    job_id = dead_jobs["explode"][0]

    text = run("dead", "show", job_id).stdout

    assert "dead" in text and "ValueError: disk full on /d0" in text and "Traceback" in text


def test_dead_requeue_by_task_moves_jobs_back_and_a_worker_runs_them(
    run: Callable[..., Result],
    dead_jobs: dict[str, list[str]],
    worker_process: Callable[..., subprocess.Popen[bytes]],
) -> None:
    out = as_json(run("dead", "requeue", "--task", "ops.later", "--json"))
    queued = as_json(run("queues", "--json"))[0]

    proc = worker_process("tests.operations.test_cli:tasks", "--burst", "--log-level", "WARNING")
    assert proc.wait(30) == 0
    records = [as_json(run("job", i, "--json")) for i in dead_jobs["later"]]
    left = as_json(run("dead", "list", "--json"))

    assert out == {"requeued": 2, "skipped": 0, "queues": {"default": 2}, "not_found": []}
    assert queued["ready"]["normal"] == 2 and queued["dead"] == 3
    assert [(r["status"], r["result"]) for r in records] == [("succeeded", 100), ("succeeded", 101)]
    assert sorted(d["id"] for d in left) == sorted(dead_jobs["explode"])


def test_dead_requeue_one_id_and_report_ids_that_are_not_dead(
    run: Callable[..., Result], dead_jobs: dict[str, list[str]]
) -> None:
    target = dead_jobs["explode"][2]

    first = run("dead", "requeue", target)
    again = run("dead", "requeue", target, "--json")
    unknown = run("dead", "requeue", "no-such-id")

    assert first.exit_code == 0 and "requeued 1 dead job(s)" in first.stdout
    assert json.loads(again.stdout)["requeued"] == 0 and again.exit_code == 1
    assert unknown.exit_code == 1 and "not found: no-such-id" in unknown.stderr
    assert as_json(run("job", target, "--json"))["status"] == "queued"


def test_dead_requeue_needs_ids_a_filter_or_all(run: Callable[..., Result]) -> None:
    result = run("dead", "requeue")

    assert result.exit_code == 2
    assert "--all" in result.output


def test_dead_requeue_all_goes_in_batches(
    run: Callable[..., Result],
    dead_jobs: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_dead, "DEAD_BATCH", 2)  # five dead jobs: three calls to Redis
    sizes: list[int] = []
    revive = Ops.revive

    def spy(self: Ops, queue: str, job_ids: Any) -> Any:
        sizes.append(len(job_ids))
        return revive(self, queue, job_ids)

    monkeypatch.setattr(Ops, "revive", spy)

    result = run("dead", "requeue", "--all")
    counts = as_json(run("queues", "--json"))[0]

    assert result.exit_code == 0 and "requeued 5 dead job(s)" in result.stdout
    assert sizes == [2, 2, 1]
    assert "requeueing" in result.stderr and "100%" in result.stderr  # the progress bar
    assert counts["dead"] == 0 and counts["ready_total"] == 5


def test_dead_purge_asks_first_and_deletes_only_on_yes(
    run: Callable[..., Result], dead_jobs: dict[str, list[str]]
) -> None:
    refused = run("dead", "purge", "--task", "ops.explode", input="n\n")
    still = as_json(run("dead", "list", "--json"))

    accepted = run("dead", "purge", "--task", "ops.explode", input="y\n")
    left = as_json(run("dead", "list", "--json"))
    gone = run("job", dead_jobs["explode"][0])

    assert refused.exit_code == 1 and "aborted" in refused.stderr
    assert "Delete 3 dead job(s) for good" in refused.stderr
    assert len(still) == 5
    assert accepted.exit_code == 0 and "purged 3 dead job(s)" in accepted.stdout
    assert sorted(d["id"] for d in left) == sorted(dead_jobs["later"])
    assert gone.exit_code == 1


def test_dead_purge_by_id_never_deletes_a_job_that_is_not_dead(
    run: Callable[..., Result], dead_jobs: dict[str, list[str]]
) -> None:
    alive = enqueue(run, "ops.add", "--args", "[1]")

    result = run("dead", "purge", alive, dead_jobs["later"][0], "--yes", "--json")

    assert json.loads(result.stdout)["purged"] == 1
    assert as_json(run("job", alive, "--json"))["status"] == "queued"
    assert as_json(run("queues", "--json"))[0]["ready_total"] == 1


def test_dead_purge_yes_skips_the_question(
    run: Callable[..., Result], dead_jobs: dict[str, list[str]]
) -> None:
    out = as_json(run("dead", "purge", "--all", "--yes", "--json"))

    assert out["purged"] == 5 and out["queues"] == {"default": 5}
    assert as_json(run("dead", "list", "--json")) == []


def test_dead_list_and_purge_handle_an_id_that_is_not_utf8(
    run: Callable[..., Result], redis_url: str, prefix: str
) -> None:
    # Foreign bytes pushed onto a ready list are buried as poison; the CLI must list them and
    # send them back to Redis byte for byte (hiredis's packer refuses the decoded surrogates).
    broker = SyncBroker(Settings(redis_url=redis_url, prefix=prefix))
    ops = broker.ops
    raw = redis.Redis.from_url(redis_url)
    raw.rpush(ops.keys("default").ready(JobPriority.NORMAL), b"\xff\xfe-foreign")
    broker.run(ops.fetch("default", 1, "w-test"))

    listed = as_json(run("dead", "list", "--json"))
    assert [row["error_type"] for row in listed] == ["PoisonJob"]
    out = as_json(run("dead", "purge", "--all", "--yes", "--json"))
    assert out["purged"] == 1
    assert raw.zcard(ops.keys("default").dead) == 0
    broker.close()


# --------------------------------------------------------------------------- events


def test_events_tails_job_updates_with_filters(
    env: dict[str, str], run: Callable[..., Result], burst: Callable[..., Any]
) -> None:
    cmd = [sys.executable, "-m", "taskforge.cli", "events", "--json", "--count", "2"]
    cmd += ["--status", "succeeded", "--task", "ops.add"]
    full_env = {**os.environ, **env, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        assert "listening on job:updates" in proc.stderr.readline()  # subscribed: safe to go on
        ids = [enqueue(run, "ops.add", "--args", f"[{i}]") for i in range(2)]
        enqueue(run, "ops.explode", "--max-retries", "0")

        burst()
        out, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()

    events = [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 0
    assert [e["status"] for e in events] == ["succeeded", "succeeded"]
    assert sorted(e["job_id"] for e in events) == sorted(ids)
    assert {e["task"] for e in events} == {"ops.add"}
    assert set(events[0]) >= {"job_id", "task", "queue", "status", "attempt", "timestamp"}


# --------------------------------------------------------------------------- health


def test_health_reports_the_guides_dict_depths_and_warnings(run: Callable[..., Result]) -> None:
    enqueue(run, "ops.add", "--priority", "high")

    report = as_json(run("health", "--json"))
    text = run("health").stdout

    for key in ("status", "connected", "latency_ms", "version", "used_memory",
                "connected_clients", "uptime_seconds"):  # fmt: skip
        assert key in report
    assert report["connected"] is True and report["error"] is None
    assert set(report) == set(cli_module.HEALTH_KEYS)
    assert report["version"].startswith("7.")
    assert report["queues"]["default"]["high"] == 1
    assert report["workers"] == 0
    # The test server runs without persistence, and a job waits with no worker.
    assert report["status"] == "degraded"
    assert any("persistence is off" in w for w in report["warnings"])
    assert any("1 job(s) ready but no live worker" in w for w in report["warnings"])
    assert "degraded" in text and "warning: persistence is off" in text


def test_health_exit_codes_follow_redis_up_and_down(env: dict[str, str]) -> None:
    server = RedisServer(password="s3cret-pw").start()
    runner = CliRunner()
    url = server.url
    try:
        up = runner.invoke(cli, ["health", "--redis-url", url], env=env)
        strict = runner.invoke(cli, ["health", "--strict", "--redis-url", url], env=env)
        server.kill()
        down = runner.invoke(cli, ["health", "--json", "--redis-url", url], env=env)
    finally:
        server.cleanup()

    assert up.exit_code == 0, up.output  # degraded (no persistence) is still alive
    assert strict.exit_code == 1
    assert down.exit_code == 1
    report = json.loads(down.stdout)
    assert set(report) == set(cli_module.HEALTH_KEYS)
    assert report["status"] == "unhealthy" and report["connected"] is False
    assert report["latency_ms"] is None and report["queues"] == {}
    assert "redis://:***@127.0.0.1" in report["error"]
    assert "s3cret-pw" not in down.output + up.output


def test_health_warns_when_redis_may_evict_jobs() -> None:
    server = RedisServer(args=["--maxmemory-policy", "allkeys-lru"]).start()
    try:
        result = CliRunner().invoke(cli, ["health", "--json", "--redis-url", server.url])
    finally:
        server.cleanup()

    report = json.loads(result.stdout)
    assert result.exit_code == 0
    assert report["status"] == "degraded"
    assert any("maxmemory-policy is 'allkeys-lru'" in w for w in report["warnings"])


@pytest.mark.parametrize(
    ("info", "save", "expected"),
    [
        ({"redis_version": "7.0.15", "aof_enabled": "1"}, "", []),
        ({"redis_version": "7.0.15", "aof_enabled": "0"}, "3600 1", []),
        ({"redis_version": "7.0.15", "aof_enabled": "0"}, "", ["persistence is off"]),
        ({"redis_version": "7.0.15", "aof_enabled": "0"}, None, []),
        ({"redis_version": "6.2.14", "aof_enabled": "1"}, "", ["older than 7"]),
        (
            {"redis_version": "7.2.0", "aof_enabled": "1", "maxmemory_policy": "volatile-lru"},
            "",
            ["maxmemory-policy is 'volatile-lru'"],
        ),
    ],
)
def test_server_warnings_name_what_can_lose_jobs(
    info: dict[str, str], save: str | None, expected: list[str]
) -> None:
    warnings = server_warnings(info, save)

    assert len(warnings) == len(expected)
    for fragment, warning in zip(expected, warnings, strict=True):
        assert fragment in warning


@pytest.mark.parametrize(
    "command",
    [
        ("queues",),
        ("job", "x"),
        ("dead", "list"),
        ("dead", "requeue", "--all"),
        ("workers",),
        ("enqueue", "ops.add"),
        ("events",),
    ],
)
def test_commands_exit_1_with_one_masked_line_when_redis_is_unreachable(
    command: tuple[str, ...],
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"

    result = CliRunner().invoke(cli, [*command, "--redis-url", url])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach Redis at redis://:***@127.0.0.1")
    assert result.stderr.count("\n") == 1
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    "command",
    [("queues",), ("health",), ("enqueue", "ops.add"), ("dead", "list"), ("worker", "tests")],
)
def test_a_url_redis_cannot_use_is_a_usage_error_with_one_line(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--redis-url", "http://:pw@example.com"])

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "http://:***@example.com" in result.stderr
    assert ":pw@" not in result.output


# --------------------------------------------------------------------------- worker logs


def test_worker_logs_one_json_line_per_transition_and_never_the_password(
    prefix: str, worker_process: Callable[..., subprocess.Popen[bytes]]
) -> None:
    server = RedisServer(password="pa55-w0rd").start()
    try:
        app = register(Taskforge(Settings(redis_url=server.url, prefix=prefix)))
        ok = app.call("ops.add", 1, 2)
        handles = app.enqueue_many([ok])
        app.client.close()
        proc = worker_process(
            "tests.operations.test_cli:tasks",
            "--burst",
            "--log-format",
            "json",
            env={"REDIS_URL": server.url},
        )
        out, _ = proc.communicate(timeout=30)
    finally:
        server.cleanup()

    text = out.decode()
    lines = [json.loads(line) for line in text.splitlines()]
    assert proc.returncode == 0, text
    assert "pa55-w0rd" not in text
    assert any("redis://:***@127.0.0.1" in line["message"] for line in lines)
    (done,) = [line for line in lines if handles[0].id in line["message"]]
    assert "ops.add succeeded attempt=1 in" in done["message"]
    assert {"ts", "level", "logger", "message"} <= set(done)


def test_worker_warns_at_startup_when_redis_may_lose_jobs(
    worker_process: Callable[..., subprocess.Popen[bytes]],
) -> None:
    server = RedisServer(password="env-pw-123", args=["--maxmemory-policy", "allkeys-lru"])
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"  # the password comes from REDIS_PASSWORD
        proc = worker_process(
            "tests.operations.test_cli:tasks",
            "--burst",
            env={"REDIS_URL": url, "REDIS_PASSWORD": "env-pw-123"},
        )
        out, _ = proc.communicate(timeout=30)
    finally:
        server.cleanup()

    text = out.decode()
    assert proc.returncode == 0, text
    assert "WARNING taskforge.worker: maxmemory-policy is 'allkeys-lru'" in text
    assert "WARNING taskforge.worker: persistence is off" in text
    assert "env-pw-123" not in text


def test_worker_refuses_a_metrics_port_in_use(
    worker_process: Callable[..., subprocess.Popen[bytes]],
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = worker_process(
            "tests.operations.test_cli:tasks", "--burst", "--metrics-port", str(port)
        )
        out, _ = proc.communicate(timeout=30)

    assert proc.returncode == 1
    assert f"error: cannot start worker: metrics port {port}" in out.decode()


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("30s", 30), ("15m", 900), ("2h", 7200), ("1.5d", 129600)]
)
def test_parse_duration_reads_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_workers_with_none_alive_says_so(run: Callable[..., Result]) -> None:
    assert run("workers").stdout == "no live workers\n"
    assert as_json(run("workers", "--json")) == []


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The CLI reads REDIS_URL/TASKFORGE_PREFIX; a developer's shell must not leak into tests.
    for var in ("REDIS_URL", "REDIS_PASSWORD", "TASKFORGE_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    yield
