"""A dashboard without authentication (loopback only) against DNS rebinding: a request whose
Host header names another site is refused, so a page elsewhere cannot read or post to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import free_port

pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_auth_dashboard(redis_url: str, prefix: str) -> Iterator[str]:
    """``taskforge dashboard`` on 127.0.0.1 with no token: its base URL."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    for name in ("TASKFORGE_DASHBOARD_TOKEN", "TASKFORGE_DASHBOARD_BASIC_AUTH"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "taskforge.cli", "dashboard", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/static/favicon.svg", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_request_naming_another_host_is_refused(no_auth_dashboard: str) -> None:
    port = no_auth_dashboard.rsplit(":", 1)[1]

    def get(host: str, path: str = "/") -> httpx.Response:
        return httpx.get(no_auth_dashboard + path, headers={"Host": host}, timeout=30)

    rebound = get(f"attacker.example:{port}")
    assert rebound.status_code == 403 and "no authentication" in rebound.text
    assert "csrf" not in rebound.text
    assert get("attacker.example", "/api/overview").status_code == 403
    post = httpx.post(no_auth_dashboard + "/queues/default/purge",
                      headers={"Host": f"evil.test:{port}"}, timeout=30)  # fmt: skip
    assert post.status_code == 403

    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert get(host).status_code == 200, host
