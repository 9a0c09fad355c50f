"""Bad input is refused at the call (``.delay()``, ``.schedule()``, ``enqueue_many``, the CLI),
with nothing written, instead of being dead-lettered by the worker."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from typer.testing import CliRunner

from taskforge import ConfigurationError, SerializationError, Taskforge
from taskforge.callcheck import MAX_ARG_DEPTH
from taskforge.cli import cli
from taskforge.job import JobStatus


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"k": value}
    return value


def echo(x: Any = None) -> Any:
    """Returns its argument."""
    return x


@pytest.fixture
def app(app_factory: Callable[..., Taskforge]) -> Taskforge:
    app = app_factory()
    app.task(name="v.echo")(echo)
    return app


def task_of(app: Taskforge) -> Any:
    return app.registry.get("v.echo")


def queued(app: Taskforge) -> int:
    counts = app.client.broker.run(app.client.broker.ops.counts("default"))
    return counts.ready_total + counts.scheduled


def test_the_deepest_argument_accepted_is_one_a_worker_decodes(app: Taskforge) -> None:
    handle = task_of(app).delay(nested(MAX_ARG_DEPTH))

    record = app.client.record("default", handle.id)
    assert record is not None and record.job is not None
    assert record.job.args == [nested(MAX_ARG_DEPTH)]


@pytest.mark.parametrize("make", [nested, nested_dict])
@pytest.mark.parametrize("depth", [MAX_ARG_DEPTH + 1, 5000])
def test_arguments_nested_past_what_a_worker_decodes_are_refused(
    app: Taskforge, make: Callable[[int], Any], depth: int
) -> None:
    echo = task_of(app)

    def refused() -> None:
        with pytest.raises(SerializationError):
            echo.delay(make(depth))
        with pytest.raises(SerializationError):
            echo.delay(x=make(depth))
        with pytest.raises(SerializationError):
            echo.schedule(60, make(depth))
        with pytest.raises(SerializationError):
            app.enqueue_many([echo.s(1), echo.s(make(depth))])

    # In a thread of its own: after a RecursionError, CPython 3.11's ast.parse in the same
    # thread can fail with "AST constructor recursion depth mismatch" (pytest's assertion
    # rewriting of the modules imported later would).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(refused).result()

    assert queued(app) == 0


def test_a_depth_error_names_the_limit(app: Taskforge) -> None:
    with pytest.raises(SerializationError, match=f"at most {MAX_ARG_DEPTH}"):
        task_of(app).delay(nested(MAX_ARG_DEPTH + 1))


@pytest.mark.parametrize("text", ["\ud800", "a\udc80b", "\udfff\ud800"])
def test_strings_with_lone_surrogates_are_refused(app: Taskforge, text: str) -> None:
    echo = task_of(app)

    with pytest.raises(SerializationError, match="lone surrogate"):
        echo.delay(text)
    with pytest.raises(SerializationError, match="lone surrogate"):
        echo.delay({text: 1})
    with pytest.raises(SerializationError, match="lone surrogate"):
        app.enqueue_many([echo.s([1, text])])

    assert queued(app) == 0


def test_text_outside_the_basic_plane_and_escaped_backslashes_are_accepted(
    app: Taskforge,
) -> None:
    handle = task_of(app).delay(["\U0001f600", "\\ud800 is how it is written"])

    assert handle.status() is JobStatus.QUEUED


@pytest.mark.parametrize("job_id", ["x" * 201, "id-\udc80", ""])
def test_bad_job_ids_are_refused_at_the_call(app: Taskforge, job_id: str) -> None:
    echo = task_of(app)

    with pytest.raises(ConfigurationError, match="job id"):
        echo.options(job_id=job_id).delay(1)

    assert queued(app) == 0


def test_a_job_id_of_200_characters_is_accepted(app: Taskforge) -> None:
    handle = task_of(app).options(job_id="y" * 200).delay(1)

    assert handle.id == "y" * 200
    assert handle.status() is JobStatus.QUEUED


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("nan"), float("inf")])
def test_unique_ttl_must_be_a_positive_finite_number(app: Taskforge, ttl: float) -> None:
    with pytest.raises(ConfigurationError, match="unique_ttl"):
        task_of(app).options(unique_key="k", unique_until="ttl", unique_ttl=ttl)


@pytest.mark.parametrize(
    "extra",
    [
        ["--args", "[" * 200 + "0" + "]" * 200],
        ["--args", '["\\ud800"]'],
        ["--job-id", "z" * 201],
    ],
)
def test_cli_enqueue_refuses_what_a_worker_could_not_decode(
    redis_url: str, prefix: str, extra: list[str]
) -> None:
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix}

    result = CliRunner().invoke(cli, ["enqueue", "v.echo", *extra], env=env)

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
