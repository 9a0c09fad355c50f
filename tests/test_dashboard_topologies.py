"""The dashboard on Redis Sentinel and on a Redis Cluster: the same pages and the same live
stream as on one Redis, served by uvicorn over each real deployment.

Each deployment (a primary, a replica and three Sentinels; three cluster primaries) is started
once for the module. A worker runs in this process; the browser tests (tests/test_dashboard.py)
cover the pages' behaviour, these cover that every read and the event stream work through
Sentinel discovery and across cluster slots.
"""

from __future__ import annotations

import importlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from taskforge import JobStatus, Settings, Taskforge, Worker, WorkflowStatus, chain
from taskforge.admin import AsyncAdmin
from taskforge.dashboard import DashboardConfig, create_app
from tests.cluster import LocalCluster, LocalSentinel
from tests.redis_server import free_port

pytest.importorskip("uvicorn")


def _import_anyio_now() -> None:
    """Import every part of anyio in this thread, before uvicorn's thread first uses one.

    anyio imports its parts on first use, and pytest rewrites anyio's modules (a plugin's) as
    it imports them: a first use in the server's thread parsed them while this thread parsed
    too, which CPython 3.11's parser does not survive ("AST constructor recursion depth
    mismatch"; the dashboard's script then failed to load).
    """
    importlib.import_module("anyio._backends._asyncio")
    for name in dir(anyio):
        getattr(anyio, name)


_import_anyio_now()


@pytest.fixture(scope="module", params=["sentinel", "cluster"])
def deployment_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real Sentinel deployment, or a real 3-primary cluster: its ``redis_url``."""
    deployment: LocalSentinel | LocalCluster
    deployment = LocalSentinel() if request.param == "sentinel" else LocalCluster(primaries=3)
    try:
        deployment.start()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"cannot start a local {request.param} deployment: {exc}")
    yield deployment.url
    deployment.cleanup()


@pytest.fixture
def app(deployment_url: str) -> Iterator[Taskforge]:
    """An app of this test's own prefix on the deployment, with a task that succeeds, one that
    fails for good."""
    tf = Taskforge(Settings(redis_url=deployment_url, prefix=f"tfdt-{uuid.uuid4().hex[:8]}"))

    @tf.task(name="t.add")
    def add(a: int, b: int = 0) -> int:
        return a + b

    @tf.task(name="t.charge", max_retries=0)
    def charge(card: str) -> None:
        raise ValueError(f"card {card} declined by the bank")

    yield tf
    tf.client.close()


def serve(app: Taskforge) -> tuple[str, Starlette, Callable[[], None]]:
    """The dashboard over ``app``'s Redis, served by uvicorn in a thread (no auth: loopback)."""
    asgi = create_app(app.settings, config=DashboardConfig(), registry=app.registry)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    _until(lambda: _answers(f"{url}/api/health"), 20, "the dashboard to answer")

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return url, asgi, stop


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


async def _run_until(app: Taskforge, queues: list[str], done: Callable[[], Any]) -> None:
    """A worker on ``queues`` in this process until ``done()`` (awaited) is true."""
    worker = Worker(app.settings, app.registry, queues=queues, block_s=0.5)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            while not await done():
                await anyio.sleep(0.05)
            worker.stop()


def test_pages_show_the_deployments_counts_jobs_and_workflows(app: Taskforge) -> None:
    add, charge = app.registry.get("t.add"), app.registry.get("t.charge")
    waiting = [add.options(queue="orders").delay(i).id for i in range(3)]
    add.options(queue="orders", priority="high").delay(9)
    add.options(queue="orders").schedule(600, 1)
    add.options(queue="emails").delay(5)
    dead = charge.options(queue="fail").delay("4242").id
    steps = chain(add.options(queue="wf").s(1, 2), add.options(queue="wf").s(3)).delay()

    async def settled() -> bool:
        async with AsyncAdmin(app.settings) as admin:
            found = await admin.find(dead)
        finished = await steps.astatus() is WorkflowStatus.SUCCEEDED
        return finished and found is not None and found[1].status is JobStatus.DEAD

    anyio.run(_run_until, app, ["fail", "wf"], settled)
    url, _, stop = serve(app)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            counts = http.get("/api/overview").json()
            overview = http.get("/")
            job = http.get(f"/jobs/{dead}")
            listing = http.get("/queues/orders")
            dead_page = http.get("/dead", params={"queue": "fail"})
            workflow = http.get(f"/workflows/{steps.id}")
            workflow_json = http.get(f"/api/workflows/{steps.id}").json()
            workers = http.get("/workers")
            health = http.get("/api/health")
    finally:
        stop()

    by_queue = {q["queue"]: q for q in counts["queues"]}
    assert (by_queue["orders"]["ready_total"], by_queue["orders"]["scheduled"]) == (4, 1)
    assert (by_queue["emails"]["ready_total"], by_queue["fail"]["dead"]) == (1, 1)
    assert overview.status_code == 200
    row = re.search(r'<tr data-queue="orders">(.*?)</tr>', overview.text, re.S)
    assert row is not None and re.search(r'data-f="ready_total"[^>]*>4<', row.group(1))
    assert job.status_code == 200 and 'id="job-status">dead<' in job.text.replace(" ", "")
    assert "ValueError: card 4242 declined by the bank" in job.text
    assert listing.status_code == 200 and all(i in listing.text for i in waiting)
    assert dead_page.status_code == 200 and dead in dead_page.text
    assert workflow.status_code == 200 and 'id="workflow-status">succeeded<' in workflow.text
    assert workflow_json["status"] == "succeeded"
    assert [m["status"] for m in workflow_json["members"]] == ["succeeded", "succeeded"]
    assert workers.status_code == health.status_code == 200


def test_the_live_stream_carries_job_and_workflow_events(app: Taskforge) -> None:
    add = app.registry.get("t.add").options(queue="wf")
    workflow_id = f"live-{uuid.uuid4().hex[:8]}"
    url, asgi, stop = serve(app)
    hub = asgi.state.dashboard.hub
    _until(lambda: hub.listening, 20, "the dashboard's subscription")
    seen: list[tuple[str, dict[str, Any]]] = []

    async def watch() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            params = {"workflow": workflow_id}
            async with http.stream("GET", "/events", params=params) as stream:
                kind = ""
                async for line in stream.aiter_lines():
                    if line == ": connected":
                        # Another workflow first: its events must not reach this stream.
                        chain(add.s(5), add.s(6)).delay(workflow_id=f"{workflow_id}-other")
                        chain(add.s(1, 2), add.s(3)).delay(workflow_id=workflow_id)
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind != "overview":
                        seen.append((kind, json.loads(line[6:])))
                        if kind == "workflow" and seen[-1][1]["event"] == "succeeded":
                            return

    async def go() -> None:
        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_run_until, app, ["wf"], lambda: _true_when_seen(seen))
                await watch()

    try:
        anyio.run(go)
    finally:
        stop()

    jobs = [(e["job_id"], e["status"]) for kind, e in seen if kind == "job"]
    flow = [e["event"] for kind, e in seen if kind == "workflow"]
    assert (f"wf:{workflow_id}:1", "succeeded") in jobs
    assert {e["workflow_id"] for _, e in seen} == {workflow_id}  # not the other one's
    assert flow[-2:] == ["step_succeeded", "succeeded"]
    assert {kind for kind, _ in seen} == {"job", "workflow"}


async def _true_when_seen(seen: list[tuple[str, dict[str, Any]]]) -> bool:
    return any(kind == "workflow" and e.get("event") == "succeeded" for kind, e in seen)
