"""Errors are one clear line: no tracebacks, no pydantic dumps, and Redis' refusals are not
called "cannot reach Redis"."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio
import pytest
from typer.testing import CliRunner, Result

from taskforge import BrokerConnectionError, BrokerError, ConfigurationError, Settings, Worker
from taskforge.cli import cli
from taskforge.driver.connection import topology
from taskforge.job import JobPriority
from taskforge.protocol.brokers import SyncBroker
from taskforge.registry import Registry


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env or {})


@pytest.fixture
def env(redis_url: str, prefix: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix}


@pytest.mark.parametrize("delay", ["inf", "nan", "1e400"])
def test_enqueue_with_a_delay_that_is_not_finite_is_one_line(
    env: dict[str, str], delay: str
) -> None:
    result = invoke(["enqueue", "ops.add", "--delay", delay], env)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "finite" in result.stderr or "Invalid value" in result.stderr


@pytest.mark.parametrize("grace", ["nan", "inf", "-1"])
def test_worker_with_a_grace_that_is_not_finite_is_a_usage_error(
    env: dict[str, str], grace: str
) -> None:
    result = invoke(["worker", "tests.operations.test_cli:tasks", "--burst", "--grace", grace], env)

    assert result.exit_code == 2, result.output
    assert "--grace" in result.output
    assert "Traceback" not in result.output


def test_worker_with_an_unknown_log_level_is_a_usage_error(env: dict[str, str]) -> None:
    result = invoke(
        ["worker", "tests.operations.test_cli:tasks", "--burst", "--log-level", "bogus"], env
    )

    assert result.exit_code == 2, result.output
    assert "--log-level" in result.output and "bogus" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("TASKFORGE_LEASE", "inf", "TASKFORGE_LEASE='inf': input should be a finite number"),
        ("TASKFORGE_LEASE", "nan", "TASKFORGE_LEASE='nan'"),
        ("REDIS_SOCKET_TIMEOUT", "inf", "REDIS_SOCKET_TIMEOUT='inf'"),
        ("REDIS_URL", "", "REDIS_URL is set but empty"),
    ],
)
@pytest.mark.parametrize(
    "command", [["queues"], ["worker", "tests.operations.test_cli:tasks", "--burst"]]
)
def test_bad_environment_values_are_one_line(
    env: dict[str, str], var: str, value: str, fragment: str, command: list[str]
) -> None:
    result = invoke(command, {**env, var: value})

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert "pydantic" not in result.stderr


def test_settings_errors_are_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"TASKFORGE_LEASE": "inf", "REDIS_URL": "redis://:pw123@h/0"})

    assert str(caught.value) == (
        "invalid taskforge settings: TASKFORGE_LEASE='inf': input should be a finite number"
    )


@pytest.mark.parametrize("url", ["redis://[::1:6379/0", "redis://:pw123@[::1/0", "redis://h:x/0"])
def test_a_url_typo_is_a_configuration_error_naming_the_masked_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot use Redis URL") as caught:
        topology(Settings(redis_url=url))

    assert "pw123" not in str(caught.value)


@pytest.mark.parametrize(
    "command",
    [["queues"], ["health"], ["enqueue", "ops.add"], ["worker", "tests.operations.test_cli:tasks"]],
)
def test_an_ipv6_url_typo_is_one_line(command: list[str]) -> None:
    result = invoke([*command, "--redis-url", "redis://:pw123@[::1:6379/0"])

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Invalid IPv6 URL" in result.stderr and result.stderr.count("\n") == 1
    assert "pw123" not in result.output


def test_health_on_the_embedded_server_does_not_say_healthy() -> None:
    result = invoke(["health", "--redis-url", f"memory://{uuid.uuid4().hex[:8]}", "--strict"])

    assert result.exit_code == 1
    assert "healthy" not in result.stdout.splitlines()[0]
    assert "throwaway in-process server" in result.stdout


def test_enqueue_to_the_embedded_server_is_refused() -> None:
    result = invoke(["enqueue", "ops.add", "--redis-url", "memory://x"])

    assert result.exit_code == 2
    assert "would vanish" in result.stderr
    assert "enqueued" not in result.stdout


@pytest.mark.parametrize(
    "command",
    [["queues"], ["dead", "list"], ["job", "abc"], ["dead", "show", "abc"]],
)
@pytest.mark.parametrize("queue", ["a b", "{x}", ""])
def test_commands_refuse_invalid_queue_names(
    env: dict[str, str], command: list[str], queue: str
) -> None:
    result = invoke([*command, "-Q", queue], env)

    assert result.exit_code == 2, result.output
    assert "invalid queue name" in result.stderr
    assert result.stderr.count("\n") == 1


# --------------------------------------------------------------------------- Redis refusals


@pytest.fixture
def wrong_typed(settings_factory: Callable[..., Settings]) -> SyncBroker:
    """A broker whose queue's ready list is a string (another app writing under our prefix)."""
    broker = SyncBroker(settings_factory())
    key = broker.ops.keys("default").ready(JobPriority.HIGH)
    broker.client.set(key, "not a list")
    return broker


def test_wrongtype_is_a_refusal_not_an_unreachable_redis(wrong_typed: SyncBroker) -> None:
    with pytest.raises(BrokerError) as caught:
        wrong_typed.run(wrong_typed.ops.counts("default"))

    assert not isinstance(caught.value, BrokerConnectionError)
    assert "WRONGTYPE" in str(caught.value)
    assert "cannot reach" not in str(caught.value)
    assert "TASKFORGE_PREFIX" in str(caught.value)


def test_a_failing_script_is_not_reported_as_unreachable(wrong_typed: SyncBroker) -> None:
    with pytest.raises(BrokerError) as caught:
        wrong_typed.run(wrong_typed.ops.fetch("default", 1, "w1"))

    assert not isinstance(caught.value, BrokerConnectionError)
    assert "cannot reach" not in str(caught.value)


def test_worker_logs_a_refused_fetch_as_a_redis_error(
    settings_factory: Callable[..., Settings],
    wrong_typed: SyncBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker(settings_factory(), Registry(), block_s=0.2)

    async def run_until_logged() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(10):
                while not any("retrying" in r.getMessage() for r in caplog.records):
                    await anyio.sleep(0.02)
            worker.stop_now()

    with caplog.at_level(logging.ERROR, logger="taskforge.worker"):
        anyio.run(run_until_logged)

    (line,) = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert "Redis error" in line and "WRONGTYPE" in line
    assert "cannot reach" not in line
