"""Coming from Celery: apply_async, rate-limit forms, duration strings, and errors for habits."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskforge import ConfigurationError, EnqueueError, JobPriority, JobStatus, Taskforge
from taskforge.celery_compat import cron_hint
from taskforge.cli import cli, split_queues
from taskforge.durations import parse_duration_s
from taskforge.limits.spec import RateLimit
from taskforge.loader import module_name_of
from taskforge.protocol.brokers import SyncBroker
from taskforge.settings import Settings


def make_app(prefix: str) -> Taskforge:
    return Taskforge(Settings(redis_url="redis://127.0.0.1:1/0", prefix=prefix))


# ------------------------------------------------------------------ apply_async


def test_apply_async_runs_the_call_with_args_and_kwargs(any_url: str, prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def add(a: int, b: int, c: int = 0) -> int:
        return a + b + c

    with app.testing(redis_url=any_url):
        handle = add.apply_async(args=[1, 2], kwargs={"c": 3})

        assert handle.result(timeout=1) == 6


def test_apply_async_options_reach_the_job(any_url: str, prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with app.testing(redis_url=any_url, eager=False, skip_delays=False):
        later = add.apply_async((1, 2), countdown=30, queue="math", priority="high", job_id="s-1")
        at = datetime.now(UTC) + timedelta(hours=1)
        planned = add.apply_async(args=(3, 4), eta=at)

        info = later.info()
        assert (later.id, later.queue, info.status) == ("s-1", "math", JobStatus.SCHEDULED)
        assert info.job is not None and info.job.priority is JobPriority.HIGH
        assert info.run_at_ms is not None and info.created_ms is not None
        assert 25_000 <= info.run_at_ms - info.created_ms <= 35_000
        assert planned.info().run_at_ms == pytest.approx(at.timestamp() * 1000, abs=5)


def test_apply_async_expires_reaches_the_job(any_url: str, prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with app.testing(redis_url=any_url, eager=False):
        before_ms = datetime.now(UTC).timestamp() * 1000
        handle = add.apply_async(args=[1, 2], countdown=30, expires=60)

        job = handle.info().job
        assert job is not None and job.expires_ms is not None
        assert 55_000 <= job.expires_ms - before_ms <= 65_000


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"args": [1, 2], "task_id": "x"}, r"task_id= \(job_id=\.\.\.\)"),
        ({"args": [1, 2], "countdown": 1, "eta": datetime.now(UTC)}, "countdown= .* or eta="),
        ({"args": "12"}, r"args= as a list"),
        ({"args": [1, 2], "expires": -1}, r"expires must be seconds > 0"),
        ({"args": [1, 2], "countdown": -1}, r"finite number >= 0"),
        ({"args": [1, 2], "priority": 9}, r"unknown priority 9; use one of"),
    ],
)
def test_apply_async_refuses_what_it_cannot_do_and_says_what_to_write(
    prefix: str, call: dict[str, object], message: str
) -> None:
    app = make_app(prefix)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ConfigurationError, match=message):
        add.apply_async(**call)  # type: ignore[arg-type]


def test_apply_async_with_arguments_that_do_not_fit_raises_enqueue_error(prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with app.testing(eager=False) as bed, pytest.raises(EnqueueError, match="missing"):
        add.apply_async(args=[1])
    broker = SyncBroker(bed.settings)
    assert sum(broker.run(broker.ops.counts("default")).ready.values()) == 0


# ------------------------------------------------------------------ delay(countdown=...)


def test_delay_with_a_celery_option_says_to_use_schedule_or_apply_async(prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(EnqueueError) as caught:
        add.delay(1, 2, countdown=10)  # type: ignore[call-arg]

    text = str(caught.value)
    assert "countdown= is a call option, not an argument of" in text
    assert "add.apply_async(args=[...]" in text and "add.schedule(10, ...)" in text


def test_a_task_that_takes_countdown_gets_it_as_an_argument(any_url: str, prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def launch(countdown: int) -> int:
        return countdown

    with app.testing(redis_url=any_url):
        assert launch.delay(countdown=3).result(timeout=1) == 3


# ------------------------------------------------------------------ rate limits


@pytest.mark.parametrize(
    ("given", "spec", "window_ms"),
    [(10, "10/s", 1000), ("10/s", "10/s", 1000),
     ("10/m", "10/m", 60_000), ("10/h", "10/h", 3_600_000), (5.0, "5/s", 1000)],
)  # fmt: skip
def test_celery_rate_limit_forms_are_accepted(
    given: str | int | float, spec: str, window_ms: int
) -> None:
    app = Taskforge()

    @app.task(rate_limit=given)  # type: ignore[arg-type]
    def limited() -> None: ...

    assert limited.opts.rate_limit == spec
    assert RateLimit.parse(spec) == RateLimit(int(spec.split("/")[0]), window_ms)


@pytest.mark.parametrize(
    ("given", "message"),
    [(0.5, r"'1/2s' \(one every two seconds\)"), (0, "whole number >= 1"),
     (True, "not bool"), ("10 per minute", r"e\.g\. '100/m'.*rate_limit=10"),
     ("10", r"'<count>/<unit>'.*\(rate_limit=10\)"),
     ("10/w", "unit s, m, h or d")],
)  # fmt: skip
def test_a_bad_rate_limit_says_what_to_write(given: object, message: str) -> None:
    app = Taskforge()

    with pytest.raises(ConfigurationError, match=message):
        app.task(rate_limit=given)(lambda: None)  # type: ignore[call-overload]


# ------------------------------------------------------------------ cron=10.0


@pytest.mark.parametrize(
    ("value", "expression"),
    [(10.0, "* * * * * */10"), (timedelta(minutes=5), "*/5 * * * *"), (3600, "0 * * * *"),
     (7, None)],
)  # fmt: skip
def test_periodic_with_a_number_says_which_cron_to_write(
    value: object, expression: str | None
) -> None:
    app = Taskforge()

    @app.task(name="beat")
    def beat() -> None: ...

    with pytest.raises(ConfigurationError) as caught:
        app.periodic(beat, cron=value)  # type: ignore[arg-type]

    assert "cron= takes a cron expression string" in str(caught.value)
    if expression is not None:
        assert f"cron={expression!r}" in str(caught.value)
        app.periodic(beat, cron=expression)  # what it suggests is accepted


def test_task_decorator_with_a_numeric_cron_is_refused_at_decoration() -> None:
    app = Taskforge()

    with pytest.raises(ConfigurationError, match=r"\* \* \* \* \* \*/30"):
        app.task(cron=30)(lambda: None)  # type: ignore[call-overload]


def test_cron_hint_has_no_expression_for_intervals_cron_cannot_say() -> None:
    assert "; every" not in cron_hint(45.5)


# ------------------------------------------------------------------ .schedule("10s")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1h", 3600), ("1.5h", 5400), ("2d", 172800), ("250ms", 0.25)],
)
def test_duration_strings_are_read(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


def test_schedule_accepts_a_duration_string(any_url: str, prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def ping() -> str:
        return "pong"

    with app.testing(redis_url=any_url, eager=False, skip_delays=False):
        info = ping.schedule("5m").info()

        assert info.status is JobStatus.SCHEDULED
        assert info.run_at_ms is not None and info.created_ms is not None
        assert 295_000 <= info.run_at_ms - info.created_ms <= 305_000


@pytest.mark.parametrize("bad", ["10", "1h30m", "ten seconds", "5 mins"])
def test_schedule_refuses_other_text_and_says_what_to_write(prefix: str, bad: str) -> None:
    app = make_app(prefix)

    @app.task
    def ping() -> None: ...

    with pytest.raises(ConfigurationError, match=r"e\.g\. '10s', '5m', '1\.5h'"):
        ping.schedule(bad)


# ------------------------------------------------------------------ taskforge worker


def test_queue_options_accept_comma_lists() -> None:
    assert split_queues(["a,b", "c", " d , ,e"]) == ["a", "b", "c", "d", "e"]
    assert split_queues(None) == ["default"]


def test_a_file_in_a_package_is_imported_under_its_package_name(tmp_path: Path) -> None:
    (tmp_path / "proj" / "pkg").mkdir(parents=True)
    (tmp_path / "proj" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "proj" / "pkg" / "jobs.py").write_text("")
    (tmp_path / "loose.py").write_text("")

    assert module_name_of(tmp_path / "proj" / "pkg" / "jobs.py") == "pkg.jobs"
    assert module_name_of(tmp_path / "loose.py") == "loose"


def test_worker_takes_a_file_path_and_a_comma_list_of_queues(
    tmp_path: Path,
    redis_url: str,
    prefix: str,
    worker_process: Callable[..., subprocess.Popen[bytes]],
) -> None:
    package = tmp_path / "proj" / "shop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(
        textwrap.dedent(
            """
            from taskforge import task

            @task
            def ping(n: int) -> int:
                return n
            """
        )
    )
    app = Taskforge(Settings(redis_url=redis_url, prefix=prefix))
    on_b = app.call("shop.jobs.ping", 2)  # named as the file's package gives it
    on_b = replace(on_b, options=replace(on_b.options, queue="b"))
    a, b = app.enqueue_many([app.call("shop.jobs.ping", 1), on_b])

    proc = worker_process(str(package / "jobs.py"), "-Q", "default,b", "--burst")
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 0, out.decode()
    assert (a.result(timeout=5), b.result(timeout=5)) == (1, 2)
    app.client.close()


@pytest.mark.parametrize(
    ("target", "message"),
    [("nowhere.py", "no Python file"), ("no_such_pkg.tasks", "cannot import 'no_such_pkg.tasks'")],
)
def test_worker_with_an_app_it_cannot_find_exits_2_saying_what_to_give(
    target: str, message: str
) -> None:
    result = CliRunner().invoke(cli, ["worker", target, "--burst"])

    assert result.exit_code == 2
    assert message in result.output
