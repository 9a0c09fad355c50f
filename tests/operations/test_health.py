"""One health report (taskforge.health): the CLI, Admin and the guide's RedisClient agree."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from typer.testing import CliRunner

from taskforge import Admin, Settings, Taskforge
from taskforge.cli import cli
from taskforge.health import HEALTH_KEYS, MEMORY_HEALTH_WARNING
from taskforge.pubsub import RedisClient

#: Figures that move between two reads (the clock, the connections each face opens).
_MOVING = {"latency_ms", "connected_clients", "uptime_seconds", "used_memory"}


def _client_report(settings: Settings) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        rc = RedisClient(settings)
        try:
            return await rc.health_check()
        finally:
            await rc.aclose()

    return anyio.run(check)


def test_cli_admin_and_redis_client_give_the_same_report(
    app_factory: Callable[..., Taskforge], redis_url: str, prefix: str
) -> None:
    app = app_factory()
    app.task(name="h.add")(lambda a: a).delay(1)  # a ready job and no worker: a warning
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix}

    from_client = _client_report(app.settings)
    with Admin(app.settings) as admin:
        from_admin = admin.health()
    from_cli = json.loads(CliRunner().invoke(cli, ["health", "--json"], env=env).stdout)

    assert set(from_client) == set(from_admin) == set(from_cli) == set(HEALTH_KEYS)
    steady = [{k: v for k, v in r.items() if k not in _MOVING} for r in (from_client, from_admin)]
    assert steady[0] == steady[1] == {k: v for k, v in from_cli.items() if k not in _MOVING}
    assert from_cli["status"] == "degraded" and from_cli["queues"]["default"]["normal"] == 1


def test_only_a_separate_process_is_told_its_memory_server_checked_nothing() -> None:
    settings = Settings(redis_url="memory://health-one-report", prefix="h")

    in_process = _client_report(settings)
    from_cli = json.loads(
        CliRunner().invoke(cli, ["health", "--json", "--redis-url", settings.redis_url]).stdout
    )

    assert MEMORY_HEALTH_WARNING not in in_process["warnings"]
    assert from_cli["warnings"][0] == MEMORY_HEALTH_WARNING
    assert from_cli["status"] == "degraded"
