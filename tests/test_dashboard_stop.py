"""``taskforge dashboard`` stops on SIGTERM even while a live page holds its event stream open
(the stream never ends by itself, and the server would wait for it without end)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.redis_server import free_port

pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parent.parent


def test_sigterm_stops_the_dashboard_with_a_live_page_open(redis_url: str, prefix: str) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    cmd = [sys.executable, "-m", "taskforge.cli", "dashboard", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    opened = threading.Event()

    def live_page() -> None:
        try:
            with httpx.stream("GET", f"{base}/events", timeout=60) as response:
                opened.set()
                for _ in response.iter_lines():
                    pass
        except httpx.HTTPError:
            pass  # the server went away: what this test waits for

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/static/favicon.svg", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        reader = threading.Thread(target=live_page, daemon=True)
        reader.start()
        assert opened.wait(30)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)  # raises TimeoutExpired while the open stream holds the server
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
