"""Shared fixtures: a private redis-server per test session, unique key prefixes per test."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskforge import Settings, Taskforge
from tests.support.redis_server import RedisServer, external_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """A private redis-server for the session (None when TASKFORGE_TEST_REDIS_URL is set).

    In CI (``CI=true``) a missing redis-server is an error, never a skip.
    """
    if external_url():
        yield None
        return
    server = RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no redis-server: {exc}")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    """URL of the Redis the tests use. Tests isolate themselves with a unique key prefix and
    never FLUSHALL a server they did not start."""
    return external_url() or (redis_server.url if redis_server else "")


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone."""
    return f"tft-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["redis", "memory"])
def any_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Parametrises a test over the real Redis and the embedded memory:// server."""
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex[:8]}"
    return redis_url


@pytest.fixture
def settings_factory(redis_url: str, prefix: str) -> Callable[..., Settings]:
    """Settings for the test Redis with this test's prefix: ``settings_factory(lease_s=2)``."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"redis_url": redis_url, "prefix": prefix}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def app_factory(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., Taskforge]]:
    """Build a Taskforge app on the test Redis; closes their clients afterwards."""
    apps: list[Taskforge] = []

    def make(**overrides: object) -> Taskforge:
        app = Taskforge(settings_factory(**overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.client.close()


@pytest.fixture
def worker_process(redis_url: str, prefix: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real ``taskforge worker`` processes (killed at teardown)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        full_env = {**os.environ, "REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix}
        full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
        full_env.update(env or {})
        cmd = [sys.executable, "-m", "taskforge.cli", "worker", *args]
        proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
