"""A worker paused (SIGSTOP) past its lease, then resumed: it stops the job it lost, at once.

Real worker processes on the test Redis. While the zombie is stopped its lease lapses and a second
worker runs the job again; once resumed, the zombie's first lease renewal is refused, and it must
cancel (async) or interrupt (sync) the task then, so the side effects do not run twice in parallel
for long; its late outcome is refused by the lease token.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from taskforge import JobStatus, Settings, Taskforge
from tests.support import zombie_tasks
from tests.support.timetasks import wait_until

APP = "tests.support.zombie_tasks:app"
LEASE = {"TASKFORGE_LEASE": "1"}
#: How long the zombie may go on after SIGCONT: one renewal round trip, plus a loaded host.
STOP_WITHIN_S = 1.0

StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def zapp(settings_factory: Callable[..., Settings]) -> Iterator[Taskforge]:
    zombie_tasks.app.configure(settings_factory())
    yield zombie_tasks.app
    zombie_tasks.app.client.close()


def entries(r: redis.Redis, prefix: str) -> list[tuple[int, float]]:
    raw = r.lrange(zombie_tasks.ledger_key(prefix), 0, -1)
    return [(int(pid), float(at)) for pid, at in (e.split() for e in raw)]


@pytest.mark.parametrize(
    "task",
    [
        zombie_tasks.ticker_sync,
        pytest.param(zombie_tasks.ticker_async, marks=pytest.mark.slow),  # same path, async
    ],
)
def test_a_resumed_zombie_stops_the_job_whose_lease_it_lost_and_its_outcome_is_refused(
    zapp: Taskforge, worker_process: StartWorker, prefix: str, task: object
) -> None:
    r = redis.Redis.from_url(zapp.settings.redis_url, decode_responses=True)
    handle = task.delay(200)  # type: ignore[attr-defined]
    zombie = worker_process(APP, "-c", "1", env=LEASE)
    wait_until(lambda: any(pid == zombie.pid for pid, _ in entries(r, prefix)), 20)

    zombie.send_signal(signal.SIGSTOP)
    rescuer = worker_process(APP, "-c", "1", env=LEASE)
    wait_until(lambda: any(pid == rescuer.pid for pid, _ in entries(r, prefix)), 20)
    zombie.send_signal(signal.SIGCONT)
    resumed_at = time.time()
    wait_until(lambda: max(at for _, at in entries(r, prefix)) > resumed_at + 2 * STOP_WITHIN_S)

    zombie_after = [at - resumed_at for pid, at in entries(r, prefix) if pid == zombie.pid]
    assert max(zombie_after) < STOP_WITHIN_S, (
        f"zombie ran on {max(zombie_after):.2f}s after SIGCONT"
    )
    assert handle.result(timeout=20) == str(rescuer.pid)
    info = handle.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.deliveries == 2
    zombie.send_signal(signal.SIGTERM)
    out = zombie.communicate(timeout=20)[0].decode()
    assert "lease lost" in out
    assert "outcome refused" in out
