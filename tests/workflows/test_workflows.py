"""Workflows: chain, group, chord and callbacks, on the real Redis and on memory://.

Workers run in this process in burst mode (until nothing is ready), so tasks can count their
runs in plain lists.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

from taskforge import (
    EnqueueError,
    JobStatus,
    ResultTimeoutError,
    Settings,
    Taskforge,
    Worker,
    WorkflowCycleError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowStatus,
    WorkflowTooLargeError,
    chain,
    chord,
    group,
)
from taskforge.canvas import Chain
from taskforge.cli import cli
from taskforge.protocol.brokers import AsyncBroker
from taskforge.workflow.advance import WorkflowAdvancer
from taskforge.workflow.graph import MAX_WORKFLOW_MEMBERS
from taskforge.workflow.ops import WORKFLOW_EVENTS, MemberOutcome, WorkflowOps, outbox
from tests.features.test_examples import ROOT, run_example

Tasks = dict[str, Any]


def make_app(url: str, **overrides: Any) -> Taskforge:
    """An app with the tasks these tests compose; ``app.runs`` counts each task's runs."""
    prefix = f"tfw-{uuid.uuid4().hex[:10]}"
    app = Taskforge(Settings(redis_url=url, prefix=prefix, **overrides))
    runs: dict[str, list[Any]] = {}
    app.runs = runs  # type: ignore[attr-defined]

    def note(name: str, value: Any) -> None:
        runs.setdefault(name, []).append(value)

    @app.task(name="wf.add")
    def add(a: int, b: int) -> int:
        note("add", (a, b))
        return a + b

    @app.task(name="wf.mul")
    def mul(a: int, b: int) -> int:
        note("mul", (a, b))
        return a * b

    @app.task(name="wf.total")
    async def total(values: list[int]) -> int:
        note("total", values)
        return sum(values)

    @app.task(name="wf.fail", max_retries=0)
    def fail(*args: Any) -> None:
        note("fail", args)
        raise ValueError("boom")

    @app.task(name="wf.note")
    def note_task(*args: Any) -> None:
        note("note", args)

    @app.task(name="wf.big")
    def big(size: int) -> str:
        return "x" * size

    @app.task(name="wf.echo")
    def echo(value: Any) -> Any:
        return value

    return app


def t(app: Taskforge, name: str) -> Any:
    return app.registry.get(f"wf.{name}")


def runs(app: Taskforge, name: str) -> list[Any]:
    return app.runs.get(name, [])  # type: ignore[attr-defined, no-any-return]


def drain(app: Taskforge, **options: Any) -> None:
    """Run a burst worker until nothing is ready."""

    options.setdefault("concurrency", 8)

    async def go() -> None:
        with anyio.fail_after(60):
            await Worker(app.settings, app.registry, burst=True, **options).run()

    anyio.run(go)


def redis_keys(app: Taskforge) -> list[str]:
    return list(app.client.broker.client.keys(app.settings.prefix + "*"))  # type: ignore[arg-type]


@pytest.fixture
def app(any_url: str) -> Taskforge:
    return make_app(any_url)


# --------------------------------------------------------------------------- the shapes


def test_chain_feeds_each_step_the_previous_value(app: Taskforge) -> None:
    add, mul = t(app, "add"), t(app, "mul")

    h = chain(add.s(1, 2), add.s(3), mul.s(10)).delay()
    drain(app)

    assert h.result(timeout=5) == 60
    assert h.results(timeout=5) == [3, 6, 60]
    assert runs(app, "add") == [(1, 2), (3, 3)]


def test_pipe_operator_builds_the_same_chain(app: Taskforge) -> None:
    add, mul = t(app, "add"), t(app, "mul")

    h = (add.s(1, 2) | add.s(3) | mul.s(10)).delay()
    drain(app)

    assert h.result(timeout=5) == 60


def test_group_returns_the_members_values_in_order(app: Taskforge) -> None:
    add = t(app, "add")

    g = group(add.s(i, i) for i in range(20)).delay()
    drain(app)

    assert g.results(timeout=5) == [2 * i for i in range(20)]
    assert g.result(timeout=5) == [2 * i for i in range(20)]


def test_chord_runs_its_callback_once_with_the_list(app: Taskforge) -> None:
    add, total = t(app, "add"), t(app, "total")

    c = chord(group(add.s(i, i) for i in range(10)), total.s()).delay()
    piped = (group(add.s(i, 1) for i in range(3)) | total.s()).delay()
    drain(app)

    assert c.result(timeout=5) == 90
    assert piped.result(timeout=5) == 6
    assert sorted(runs(app, "total")) == sorted([[2 * i for i in range(10)], [1, 2, 3]])


def test_immutable_step_ignores_the_previous_value(app: Taskforge) -> None:
    add = t(app, "add")

    h = chain(add.s(1, 2), add.si(10, 20), add.s(1)).delay()
    drain(app)

    assert h.result(timeout=5) == 31


def test_nested_shapes_compose(app: Taskforge) -> None:
    add, mul, total = t(app, "add"), t(app, "mul"), t(app, "total")

    chains_in_group = group(chain(add.s(1, 1), mul.s(10)), chain(add.s(2, 2), mul.s(10)))
    group_in_chain = chain(add.s(1, 1), group(add.s(1), mul.s(3)), total.s())
    header_of_chains = chord([chain(add.s(1, 1), add.s(1)), add.s(5, 5)], total.s())
    handles = [w.delay() for w in (chains_in_group, group_in_chain, header_of_chains)]
    drain(app)

    assert [h.result(timeout=5) for h in handles] == [[20, 40], 9, 13]


def test_async_twins_send_and_wait(app: Taskforge) -> None:
    add, total = t(app, "add"), t(app, "total")

    async def go() -> tuple[Any, Any]:
        h = await chain(add.s(1, 2), add.s(3)).adelay()
        g = await group(add.s(1, 1), add.s(2, 2)).adelay()
        c = await (group(add.s(1, 1), add.s(2, 2)) | total.s()).adelay()
        await Worker(app.settings, app.registry, burst=True, concurrency=4).run()
        return (await h.aresult(timeout=5), await g.aresults(timeout=5)), await c.aresult(5)

    assert anyio.run(go) == ((6, [2, 4]), 6)


def test_a_handle_is_found_again_by_id(app: Taskforge) -> None:
    add = t(app, "add")
    h = chain(add.s(1, 2), add.s(3)).delay()
    drain(app)

    again = app.workflow(h.id)

    assert again.result(timeout=5) == 6
    assert again.status() is WorkflowStatus.SUCCEEDED
    assert [m.status for m in again.info().members] == ["succeeded", "succeeded"]


def test_schedule_delays_the_first_steps(app: Taskforge) -> None:
    add = t(app, "add")

    h = chain(add.s(1, 2), add.s(3)).schedule(timedelta(minutes=5))

    first = app.handle(f"wf:{h.id}:0")
    assert first.status() is JobStatus.SCHEDULED
    assert [m.status for m in h.info().members] == ["scheduled", "pending"]


def test_a_repeated_delay_with_the_same_id_writes_nothing_new(app: Taskforge) -> None:
    add = t(app, "add")
    wf = chain(add.s(1, 2), add.s(3))

    first = wf.delay(workflow_id="nightly-1")
    again = wf.delay(workflow_id="nightly-1")
    drain(app)

    assert (first.created, again.created) == (True, False)
    assert again.result(timeout=5) == 6
    assert runs(app, "add") == [(1, 2), (3, 3)]


# --------------------------------------------------------------------------- callbacks, failure


def test_on_success_callback_gets_the_value(app: Taskforge) -> None:
    add, note = t(app, "add"), t(app, "note")

    h = add.s(1, 2).on_success(note.s("done")).delay()
    drain(app)

    assert h.result(timeout=5) == 3
    assert runs(app, "note") == [(3, "done")]


def test_a_dead_step_stops_the_chain_and_runs_on_failure(app: Taskforge) -> None:
    add, fail, note = t(app, "add"), t(app, "fail"), t(app, "note")

    h = chain(add.s(1, 2), fail.s(), add.s(100)).on_failure(note.s()).delay()
    drain(app)

    with pytest.raises(WorkflowFailedError) as failed:
        h.result(timeout=5)
    member = f"wf:{h.id}:1"
    assert failed.value.job_id == member
    assert (failed.value.error_type, failed.value.message) == ("ValueError", "boom")
    assert runs(app, "add") == [(1, 2)]
    assert runs(app, "note") == [(member, "ValueError: boom")]
    statuses = {m.node: m.status for m in h.info().members}
    assert statuses[0] == "succeeded" and statuses[1] == "dead" and statuses[2] == "cancelled"


def test_a_chord_whose_member_dies_never_runs_its_callback(app: Taskforge) -> None:
    add, fail, total = t(app, "add"), t(app, "fail"), t(app, "total")

    c = chord([add.s(1, 1), fail.s(), add.s(2, 2)], total.s()).delay()
    drain(app)

    info = c.info()
    assert info.status is WorkflowStatus.FAILED
    assert info.failed_member == f"wf:{c.id}:1"
    assert info.error == "ValueError: boom"
    assert runs(app, "total") == []
    assert "[1] wf.fail  dead  ValueError: boom" in c.tree()


def test_a_value_too_large_for_the_next_step_fails_that_step_not_the_worker(any_url: str) -> None:
    app = make_app(any_url, max_payload_bytes=10_000)
    big, echo = t(app, "big"), t(app, "echo")

    h = chain(big.s(20_000), echo.s()).delay()
    drain(app)

    with pytest.raises(WorkflowFailedError) as failed:
        h.result(timeout=5)
    assert failed.value.error_type == "PayloadTooLargeError"
    assert failed.value.job_id == f"wf:{h.id}:1"


def test_cancel_stops_the_whole_workflow(app: Taskforge) -> None:
    add = t(app, "add")
    h = chain(add.s(1, 2), add.s(3), add.s(4)).delay()

    assert h.cancel() is WorkflowStatus.CANCELLED
    drain(app)

    assert runs(app, "add") == []
    assert [m.status for m in h.info().members] == ["cancelled"] * 3
    with pytest.raises(WorkflowFailedError, match="cancelled"):
        h.result(timeout=5)
    assert h.cancel() is WorkflowStatus.CANCELLED


def test_waiting_for_an_unfinished_workflow_times_out(app: Taskforge) -> None:
    h = chain(t(app, "add").s(1, 2)).delay()

    with pytest.raises(ResultTimeoutError):
        h.result(timeout=0.3)


def test_unknown_workflow_id_is_a_typed_error(app: Taskforge) -> None:
    with pytest.raises(WorkflowNotFoundError):
        app.workflow("nope").result(timeout=1)
    with pytest.raises(WorkflowNotFoundError):
        app.workflow("nope").info()


def test_finished_workflow_state_expires_with_the_result_ttl(any_url: str) -> None:
    app = make_app(any_url, result_ttl_s=120)
    h = chain(t(app, "add").s(1, 2), t(app, "add").s(3)).delay()
    drain(app)

    meta = WorkflowOps(app.settings).keys(h.id).all[0]
    ttl = app.client.broker.client.ttl(meta)

    assert 0 < int(ttl) <= 120  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda a: chain(), WorkflowError, "at least one"),
        (lambda a: group(), WorkflowError, "at least one"),
        (lambda a: group(a["add"].s(1, 1), chain()), WorkflowError, "at least one step"),
        (lambda a: chord(group(a["add"].s(1, 1))), WorkflowError, "needs a callback"),
        (lambda a: chain(a["add"].s(1)), WorkflowError, "no previous step"),
        (lambda a: chain(a["add"].s(1, 2), a["add"].s(1, 2)), WorkflowError, "previous step"),
        (lambda a: chain(a["add"].s(1, 2), a["total"].s(1)), WorkflowError, "previous step"),
        (lambda a: a["add"].s(1, 2).on_failure(a["add"].s(1)), WorkflowError, "job_id, error"),
        (lambda a: chain(a["add"].s(1, 2), object()), WorkflowError, "not a signature"),
    ],
)
def test_bad_shapes_raise_at_delay_and_write_nothing(
    app: Taskforge, build: Callable[[Tasks], Any], error: type[Exception], match: str
) -> None:
    tasks = {name: t(app, name) for name in ("add", "total")}

    with pytest.raises(error, match=match):
        build(tasks).delay()

    assert redis_keys(app) == []


def test_a_cycle_is_refused(app: Taskforge) -> None:
    add = t(app, "add")
    loop = Chain((add.s(1, 2),))
    object.__setattr__(loop, "steps", (add.s(1, 2), loop))

    with pytest.raises(WorkflowCycleError):
        loop.delay()
    assert redis_keys(app) == []


def test_a_workflow_over_the_size_limit_is_refused(app: Taskforge) -> None:
    add = t(app, "add")
    calls = [add.s(1, 1)] * (MAX_WORKFLOW_MEMBERS + 1)

    with pytest.raises(WorkflowTooLargeError, match=str(MAX_WORKFLOW_MEMBERS)):
        group(calls).delay()
    assert redis_keys(app) == []


def test_arguments_that_cannot_be_encoded_fail_at_delay(app: Taskforge) -> None:
    add, note = t(app, "add"), t(app, "note")

    with pytest.raises(EnqueueError, match="JSON"):
        chain(add.s(1, 2), note.s(object())).delay()
    assert redis_keys(app) == []


def test_a_partial_signature_alone_cannot_be_enqueued(app: Taskforge) -> None:
    with pytest.raises(EnqueueError, match="missing an argument"):
        app.enqueue_many([t(app, "add").s(1)])


# --------------------------------------------------------------------------- durability


def test_a_worker_killed_before_the_advance_loses_nothing(any_url: str, monkeypatch: Any) -> None:
    app = make_app(any_url, lease_s=0.3)
    add, total = t(app, "add"), t(app, "total")
    h = chord([add.s(1, 1), add.s(2, 2)], total.s()).on_success(t(app, "note").s()).delay()

    def die(self: WorkflowAdvancer, queue: str, outcomes: Any) -> None:
        return None  # the worker "dies" after the finish script, before the advance

    async def no_upkeep(self: WorkflowAdvancer, queues: Any) -> None:
        await anyio.sleep_forever()  # ... and no other worker replays meanwhile

    with monkeypatch.context() as patched:
        patched.setattr(WorkflowAdvancer, "note", die)
        patched.setattr(WorkflowAdvancer, "upkeep", no_upkeep)
        drain(app)
    pending = app.client.broker.client.zcard(outbox(app.settings.prefix, "default"))
    assert pending == 2
    assert runs(app, "total") == []

    async def replay_then_drain() -> None:
        broker = AsyncBroker(app.settings)
        advancer = WorkflowAdvancer(broker)
        with anyio.fail_after(10):
            while not await advancer.replay(["default"]):
                await anyio.sleep(0.05)  # entries become due once a lease has passed
            await advancer.replay(["default"])  # a second replay finds nothing to redo
        await broker.aclose()
        await Worker(app.settings, app.registry, burst=True).run()

    anyio.run(replay_then_drain)

    assert h.result(timeout=5) == 6
    assert runs(app, "total") == [[2, 4]]
    assert runs(app, "note") == [(6,)]
    assert app.client.broker.client.zcard(outbox(app.settings.prefix, "default")) == 0


def test_an_advance_replayed_enqueues_the_callback_once(app: Taskforge) -> None:
    add, total = t(app, "add"), t(app, "total")
    c = chord([add.s(1, 1), add.s(2, 2)], total.s()).delay()
    drain(app)  # runs the callback once
    outcomes = [
        MemberOutcome(f"wf:{c.id}:{n}", n, "succeeded", str(v)) for n, v in ((0, 2), (1, 4))
    ]

    async def replay_twice() -> None:
        broker = AsyncBroker(app.settings)
        advancer = WorkflowAdvancer(broker)
        await advancer.advance(outcomes)
        await advancer.advance(outcomes)
        await broker.aclose()

    anyio.run(replay_twice)
    drain(app)

    assert c.result(timeout=5) == 6
    assert runs(app, "total") == [[2, 4]]


def test_a_thousand_member_chord_runs_its_callback_exactly_once(redis_url: str) -> None:
    app = make_app(redis_url)
    add, total = t(app, "add"), t(app, "total")

    c = chord(group(add.s(i, 0) for i in range(1000)), total.s()).delay()
    drain(app, concurrency=32)

    assert c.result(timeout=10) == sum(range(1000))
    assert len(runs(app, "total")) == 1
    assert len(runs(app, "add")) == 1000


# --------------------------------------------------------------------------- events


def test_transitions_are_published_and_member_events_name_the_workflow(app: Taskforge) -> None:
    add, total = t(app, "add"), t(app, "total")
    workflow_events: list[dict[str, Any]] = []
    job_events: list[dict[str, Any]] = []

    async def go() -> str:
        listener = AsyncBroker(app.settings)
        ready = anyio.Event()

        async def listen() -> None:
            channels = (WORKFLOW_EVENTS, app.settings.events_channel)
            async for channel, data in listener.subscribe(*channels, ready=ready):
                event = json.loads(data)
                (workflow_events if channel == WORKFLOW_EVENTS else job_events).append(event)
                if event.get("event") == "succeeded":
                    return

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                await ready.wait()
                h = await (group(add.s(1, 1), add.s(2, 2)) | total.s()).adelay()
                await Worker(app.settings, app.registry, burst=True).run()
        await listener.aclose()
        return h.id

    wid = anyio.run(go)

    kinds = [e["event"] for e in workflow_events]
    assert kinds[0] == "started" and kinds[-1] == "succeeded"
    assert kinds.count("step_succeeded") == 3
    assert {e["workflow_id"] for e in workflow_events} == {wid}
    assert job_events and all(e["workflow_id"] == wid for e in job_events)


# --------------------------------------------------------------------------- CLI


def test_cli_shows_the_tree_and_cancels(redis_url: str) -> None:
    app = make_app(redis_url)
    add, fail, total = t(app, "add"), t(app, "fail"), t(app, "total")
    failed = chord([add.s(1, 1), fail.s()], total.s()).delay()
    drain(app)
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": app.settings.prefix}
    runner = CliRunner()
    waiting = chain(add.s(1, 2), add.s(3)).delay()

    shown = runner.invoke(cli, ["workflow", "show", failed.id], env=env)
    as_json = runner.invoke(cli, ["workflow", "show", waiting.id, "--json"], env=env)
    cancelled = runner.invoke(cli, ["workflow", "cancel", waiting.id], env=env)
    missing = runner.invoke(cli, ["workflow", "show", "nope"], env=env)

    assert shown.exit_code == 0, shown.output
    assert f"workflow {failed.id}  failed" in shown.stdout
    assert "[1] wf.fail  dead  ValueError: boom" in shown.stdout
    assert "callback: [2] wf.total  cancelled" in shown.stdout
    members = json.loads(as_json.stdout)["members"]
    assert [m["status"] for m in members] == ["queued", "pending"]
    assert cancelled.stdout.strip() == f"workflow {waiting.id}: cancelled"
    assert waiting.status() is WorkflowStatus.CANCELLED
    assert missing.exit_code == 1 and "no workflow 'nope'" in missing.stderr


def test_a_callback_of_a_callback_runs_after_the_workflow_succeeded(app: Taskforge) -> None:
    add, note, fail = t(app, "add"), t(app, "note"), t(app, "fail")

    h = add.s(1, 2).on_success(add.s(10).on_success(note.s())).on_failure(fail.s()).delay()
    drain(app)

    assert h.result(timeout=5) == 3
    assert runs(app, "note") == [(13,)]
    assert [m.status for m in h.info().members] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "skipped",
    ]


# --------------------------------------------------------------------------- example, benchmark


def test_the_report_example_fans_out_gathers_reports_and_alerts_once() -> None:
    out = run_example(ROOT / "examples" / "workflow_report.py")

    assert "report to ops@example.com: 3 tenants, 24 steps" in out
    assert "result: sent to ops@example.com" in out
    assert out.count("ALERT: ") == 1
    assert "callback: [2] report.gather  cancelled" in out
    assert "on_failure: [4] report.alert  succeeded" in out


def test_the_workflow_benchmark_prints_its_table(redis_url: str) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "workflow_bench.py"), "--redis-url", redis_url]
    proc = subprocess.run(
        [*cmd, "--members", "30", "--steps", "5"], capture_output=True, text=True, timeout=120
    )

    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["figure", "value", "target"]
    assert any(line.startswith("chord of 30: delay() -> callback start") for line in lines)
    assert any(line.startswith("  overhead per step") for line in lines)


def test_a_member_cancelled_by_its_job_id_fails_its_workflow_after_the_replay(any_url: str) -> None:
    app = make_app(any_url, lease_s=0.2)
    add = t(app, "add")
    h = chain(add.s(1, 2), add.s(3)).delay()

    app.handle(f"wf:{h.id}:0").cancel()

    async def replay() -> None:
        broker = AsyncBroker(app.settings)
        with anyio.fail_after(10):
            while not await WorkflowAdvancer(broker).replay(["default"]):
                await anyio.sleep(0.05)
        await broker.aclose()

    anyio.run(replay)
    with pytest.raises(WorkflowFailedError) as failed:
        h.result(timeout=5)
    assert failed.value.error_type == "Cancelled"
    assert [m.status for m in h.info().members] == ["cancelled", "cancelled"]
