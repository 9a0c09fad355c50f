"""pytest fixtures for testing your own tasks (the ``pytest11`` entry point ``taskforge``).

Fixtures (each test gets its own private ``memory://`` server, torn down after it):

* ``taskforge_app``: your app, switched to that server for the test; ``.delay()`` only enqueues.
* ``taskforge_worker``: runs what was sent: ``taskforge_worker.drain()`` (a burst worker).
* ``taskforge_eager``: your app with every ``.delay()`` run to the end before it returns.
* ``taskforge_events``: the ``job:updates`` events of the test (``.statuses(job_id)``).

Which app: the ``taskforge_app`` ini option (``pkg.tasks:app``, ``tasks.py``), else the default
app of ``from taskforge import task``. ``taskforge_redis_url`` runs them on a real Redis instead
(each test with its own key prefix). Disable the plugin with ``-p no:taskforge``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# taskforge is imported inside the fixtures, not here: pytest loads this module in every
# project where taskforge is installed, and those that never use the fixtures should not pay
# for importing it (redis, pydantic, anyio: most of a second on a small machine). That is also
# why this module sits outside the taskforge package (see pyproject.toml).
if TYPE_CHECKING:
    from taskforge.app import Taskforge
    from taskforge.testing import EventRecorder, Testbed


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini options (cheap: no taskforge import)."""
    parser.addini(
        "taskforge_app",
        "app the taskforge fixtures test: pkg.tasks:app or tasks.py (default: the default app)",
        default="",
    )
    parser.addini(
        "taskforge_redis_url",
        "Redis the taskforge fixtures use (default: a private memory:// server per test)",
        default="memory://",
    )


@pytest.fixture
def _taskforge_testing(request: pytest.FixtureRequest) -> Iterator[tuple[Taskforge, Testbed]]:
    from taskforge.loader import load_app

    spec = str(request.config.getini("taskforge_app")).strip()
    app = load_app([spec] if spec else [])
    url = str(request.config.getini("taskforge_redis_url")).strip() or "memory://"
    with app.testing(eager=False, redis_url=url) as bed:
        yield app, bed


@pytest.fixture
def taskforge_app(_taskforge_testing: tuple[Taskforge, Testbed]) -> Taskforge:
    """The app under test on a private server; jobs wait for ``taskforge_worker.drain()``."""
    return _taskforge_testing[0]


@pytest.fixture
def taskforge_worker(_taskforge_testing: tuple[Taskforge, Testbed]) -> Testbed:
    """Runs the jobs sent so far: ``.drain()`` (``await .adrain()`` in async tests) starts a
    burst worker that returns once the queues are empty, scheduled jobs and backoff included."""
    return _taskforge_testing[1]


@pytest.fixture
def taskforge_eager(_taskforge_testing: tuple[Taskforge, Testbed]) -> Taskforge:
    """The app under test with eager ``.delay()``: the handle it returns already has the result."""
    app, bed = _taskforge_testing
    bed.client.eager = True
    return app


@pytest.fixture
def taskforge_events(_taskforge_testing: tuple[Taskforge, Testbed]) -> Iterator[EventRecorder]:
    """The test's ``job:updates`` events: ``.statuses(job_id)``, ``.wait_for(job_id, status)``."""
    with _taskforge_testing[1].events() as recorder:
        yield recorder
