"""Passwords never printed in clear: URL userinfo, ``?password=``, scheme-less URLs, repr()."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from taskforge import Settings, Taskforge
from taskforge.cli import cli
from taskforge.settings import mask_url
from tests.support.redis_server import RedisServer, free_port


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://host:6379/0?password=hunter22", "redis://host:6379/0?password=***"),
        (
            "redis://host/0?db=1&password=hunter22&socket_timeout=2",
            "redis://host/0?db=1&password=***&socket_timeout=2",
        ),
        ("user:hunter22@host:6379", "user:***@host:6379"),
        (":hunter22@host:6379/0", ":***@host:6379/0"),
        ("redis://:p@ss@host/0", "redis://:***@host/0"),
        ("redis://host:6379/0?client_name=a@b", "redis://host:6379/0?client_name=a@b"),
    ],
)
def test_mask_url_hides_every_password_form(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_does_not_raise_on_a_malformed_ipv6_host() -> None:
    assert mask_url("redis://:pw@[::1/0") == "redis://:***@[::1/0"


def test_repr_and_str_of_settings_show_no_secret() -> None:
    settings = Settings(
        redis_url="redis://:urlpw11@host/0?password=querypw22",
        redis_password="envpw33",
        sentinel_password="sentpw44",
        signing_key="signkey55",
    )

    shown = repr(settings) + str(settings)

    for secret in ("urlpw11", "querypw22", "envpw33", "sentpw44", "signkey55"):
        assert secret not in shown
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "envpw33"


@pytest.mark.parametrize(
    "command", [("queues",), ("health",), ("job", "x"), ("dead", "list"), ("workers",)]
)
def test_cli_errors_never_show_a_query_password(command: tuple[str, ...]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?password=hunter22"

    result = CliRunner().invoke(cli, [*command, "--redis-url", url])

    assert result.exit_code == 1
    assert "hunter22" not in result.output
    assert "password=***" in result.output


@pytest.mark.parametrize("command", [("queues",), ("enqueue", "ops.add")])
def test_cli_errors_never_show_the_password_of_a_scheme_less_url(
    command: tuple[str, ...],
) -> None:
    url = f"user:hunter22@127.0.0.1:{free_port()}"

    result = CliRunner().invoke(cli, [*command, "--redis-url", url])

    assert result.exit_code == 2
    assert "hunter22" not in result.output
    assert result.stderr.count("\n") == 1


def test_worker_startup_line_masks_a_query_password(
    prefix: str, worker_process: Callable[..., subprocess.Popen[bytes]]
) -> None:
    server = RedisServer(password="qry-pw-77").start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0?password=qry-pw-77"
        Taskforge(Settings(redis_url=url, prefix=prefix)).client.close()
        proc = worker_process("tests.operations.test_cli:tasks", "--burst", env={"REDIS_URL": url})
        out, _ = proc.communicate(timeout=30)
    finally:
        server.cleanup()

    text = out.decode()
    assert proc.returncode == 0, text
    assert "qry-pw-77" not in text
    assert "password=***" in text
