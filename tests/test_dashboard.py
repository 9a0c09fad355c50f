"""The dashboard, driven as a person would: Debian's chromium through Playwright, against a real
Redis, a real ``taskforge dashboard`` process and a real worker subprocess.

Screenshots of the main pages are written by these tests: to ``$TASKFORGE_SCREENSHOTS`` when set
(``TASKFORGE_SCREENSHOTS=docs/screenshots pytest tests/test_dashboard.py`` refreshes the README's),
else to a temporary directory.
"""

from __future__ import annotations

import base64
import importlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from typer.testing import CliRunner

from taskforge import Admin, JobStatus, Settings, WorkflowStatus, chain, chord, group
from taskforge.cli import cli
from taskforge.dashboard import DashboardConfig, create_app
from taskforge.errors import ConfigurationError
from tests import dashboard_tasks
from tests.redis_server import free_port

pytest.importorskip("playwright")
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("TASKFORGE_CHROMIUM", "/usr/bin/chromium"))
TOKEN = "a-long-enough-test-token-42"
#: How long the browser waits for a page to change by itself (live updates, a worker's run).
LIVE_MS = 15_000
expect.set_options(timeout=LIVE_MS)

Server = Callable[..., str]


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium for the module (Debian's: Playwright's download cannot run here)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(LIVE_MS)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go (the README's folder when $TASKFORGE_SCREENSHOTS says so)."""
    target = Path(os.environ.get("TASKFORGE_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


# One dashboard (token-protected) and one worker serve the whole module, under a prefix of the
# module's own; each test uses queues of its own, so tests do not see each other's jobs.


@pytest.fixture(scope="module")
def mod_prefix() -> str:
    return f"tfd-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def env(redis_url: str, mod_prefix: str) -> dict[str, str]:
    full = {**os.environ, "REDIS_URL": redis_url, "TASKFORGE_PREFIX": mod_prefix}
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), full.get("PYTHONPATH", "")])
    for var in ("TASKFORGE_DASHBOARD_TOKEN", "TASKFORGE_DASHBOARD_BASIC_AUTH",
                "TASKFORGE_DASHBOARD_READ_ONLY"):  # fmt: skip
        full.pop(var, None)
    return full


@pytest.fixture(scope="module")
def launch(env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``taskforge ...`` subprocesses for the module (ended at its teardown)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "taskforge.cli", *args]
        proc = subprocess.Popen(cmd, env={**env, **(extra_env or {})}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(app: Any) -> Iterator[Server]:
    """``server(read_only=..., token=...)``: a dashboard served over HTTP by uvicorn, in a thread
    of this process (what ``taskforge dashboard`` runs, without paying a process start)."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(
        *, read_only: bool = False, token: str | None = TOKEN, basic_auth: str | None = None
    ) -> str:
        config = DashboardConfig(token=token, basic_auth=basic_auth, read_only=read_only)
        asgi = create_app(app.settings, config=config, registry=app.registry)
        port = free_port()
        srv = uvicorn.Server(uvicorn.Config(asgi, port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        servers.append((srv, thread))
        url = f"http://127.0.0.1:{port}"
        if basic_auth:
            headers = {"Authorization": "Basic " + base64.b64encode(basic_auth.encode()).decode()}
        else:
            headers = {"Authorization": f"Bearer {TOKEN}"}
        _until(lambda: _answers(f"{url}/api/health", headers), 20, "the dashboard to answer")
        return url

    yield start
    for srv, thread in servers:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def url(server: Server) -> str:
    """The module's dashboard (token-protected)."""
    return server()


@pytest.fixture(scope="module")
def app(redis_url: str, mod_prefix: str) -> Iterator[Any]:
    """The tasks' app, pointed at the test Redis and prefix (as the worker subprocess is)."""
    dashboard_tasks.app.configure(Settings(redis_url=redis_url, prefix=mod_prefix))
    yield dashboard_tasks.app
    dashboard_tasks.app.client.close()


@pytest.fixture(scope="module")
def admin(app: Any) -> Iterator[Admin]:
    with Admin(app.settings) as a:
        yield a


#: Queues the module's worker serves (tests that need jobs to run use these).
WORKED = ("live", "fail", "flaky", "dl", "ro", "wf")


@pytest.fixture(scope="module")
def worker(launch: Callable[..., subprocess.Popen[bytes]], app: Any, admin: Admin) -> None:
    """One real worker for the module, up (heartbeating) before the first test uses it."""
    queues = [arg for q in WORKED for arg in ("-Q", q)]
    launch("worker", "tests.dashboard_tasks:app", *queues, "--log-level", "WARNING")
    _until(lambda: admin.workers(), 30, "the worker's first heartbeat")


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def _dead(admin: Admin, job_id: str) -> bool:
    found = admin.find(job_id)
    return found is not None and found[1].status is JobStatus.DEAD


def _seed_last_hour(admin: Admin, queue: str) -> list[int]:
    """Per-minute counters for the last hour, as workers would have written them."""
    ops = admin.broker.ops
    now_min = admin.broker.run(ops.server_time_ms()) // 60_000
    done = [40 + (m * 7) % 25 + (m // 10) * 6 for m in range(60)]
    for m, n in enumerate(done):
        depth = 120 + int(80 * ((m % 20) / 20)) if m < 55 else 6  # sampled; drained at the end
        failed = 3 if m % 17 == 5 else int(m % 9 == 0)
        counts = {queue: {"done": n, "failed": failed, "depth": depth}}
        admin.broker.run(ops.count_outcomes(now_min - 59 + m, counts))
    return done


def _cell(page: Page, queue: str, field: str) -> Any:
    return page.locator(f'#queues tr[data-queue="{queue}"] [data-f="{field}"]')


# --------------------------------------------------------------------------- overview, live


def test_overview_counts_match_the_queues_and_change_live_without_reload(
    page: Page, url: str, app: Any, admin: Admin, shots: Path
) -> None:
    add = dashboard_tasks.add
    for i in range(3):
        add.options(queue="orders").delay(i)
    add.options(queue="orders", priority="high").delay(9)
    add.options(queue="orders").schedule(600, 1)
    add.options(queue="emails").delay(5)
    done_per_minute = _seed_last_hour(admin, "orders")

    page.goto(f"{url}/?token={TOKEN}")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#live-dot.on")).to_be_visible()
    depths = {d.queue: d for d in admin.depths(["orders", "emails"])}
    shown = {
        q: (_cell(page, q, "ready_total").inner_text(), _cell(page, q, "scheduled").inner_text())
        for q in ("orders", "emails")
    }
    handles = [add.options(queue="orders").delay(100 + i) for i in range(2)]

    expect(_cell(page, "orders", "ready_total")).to_have_text("6")
    expect(page.locator("#feed")).to_contain_text(handles[-1].id[:12])
    page.screenshot(path=str(shots / "overview.png"))

    assert shown == {q: (str(d.ready_total), str(d.scheduled)) for q, d in depths.items()}
    assert shown == {"orders": ("4", "1"), "emails": ("1", "0")}
    assert page.locator('[data-chart="done"] .peak').inner_text() == str(max(done_per_minute))
    assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_live_feed_filters_events_by_queue_and_shows_them_as_they_happen(
    page: Page, url: str, app: Any, worker: None, shots: Path
) -> None:
    page.goto(f"{url}/live?token={TOKEN}&queue=live")
    expect(page.locator("#live-dot.on")).to_be_visible()

    skipped = dashboard_tasks.add.options(queue="elsewhere").delay(1)
    shown = dashboard_tasks.add.options(queue="live").delay(2, 3)

    feed = page.locator("#feed")
    expect(feed.locator("tr", has_text="succeeded")).to_have_count(1)
    expect(feed).to_contain_text(shown.id[:12])
    expect(feed).not_to_contain_text(skipped.id[:12])
    page.screenshot(path=str(shots / "live.png"))


# --------------------------------------------------------------------------- jobs


def test_a_failed_jobs_traceback_is_readable_from_a_search_by_id(
    page: Page, url: str, app: Any, admin: Admin, worker: None, shots: Path
) -> None:
    job = dashboard_tasks.charge.options(queue="fail").delay("4242")
    _until(lambda: _dead(admin, job.id), 20, "the job to die")

    page.goto(f"{url}/?token={TOKEN}")
    page.fill("header input[name=id]", job.id)
    page.press("header input[name=id]", "Enter")

    expect(page.locator("#job-status")).to_have_text("dead")
    expect(page.locator("#traceback")).to_contain_text("ValueError: card 4242 declined by the bank")
    expect(page.locator("#traceback")).to_contain_text('File "')
    page.screenshot(path=str(shots / "job.png"))


def test_requeue_a_dead_job_from_its_page_and_watch_it_succeed(
    page: Page, url: str, app: Any, admin: Admin, worker: None
) -> None:
    job = dashboard_tasks.flaky.options(queue="flaky").delay("bank")
    _until(lambda: _dead(admin, job.id), 20, "the job to die")
    client = redis.Redis.from_url(app.settings.redis_url)
    client.set(dashboard_tasks.flag_key("bank"), "1")  # the upstream is back
    client.close()

    page.goto(f"{url}/jobs/{job.id}?token={TOKEN}")
    page.get_by_role("button", name="Retry (requeue)").click()

    expect(page.locator("#job-status")).to_have_text("succeeded")  # reloaded on its event
    assert admin.job(job.id)[1].result == "ok"


def test_cancel_a_scheduled_job_from_its_page(page: Page, url: str, app: Any, admin: Admin) -> None:
    job = dashboard_tasks.add.options(queue="later").schedule(3600, 1)

    page.goto(f"{url}/jobs/{job.id}?token={TOKEN}")
    page.get_by_role("button", name="Cancel job").click()

    expect(page.locator(".flash.ok")).to_contain_text("cancelled")
    assert admin.job(job.id)[1].status is JobStatus.CANCELLED


# --------------------------------------------------------------------------- purges


def test_purge_a_queue_only_after_confirming(
    page: Page, url: str, app: Any, admin: Admin, shots: Path
) -> None:
    for i in range(3):
        dashboard_tasks.add.options(queue="bulk").delay(i)
    dashboard_tasks.add.options(queue="bulk").schedule(900, 7)
    page.goto(f"{url}/queues/bulk?token={TOKEN}")
    page.screenshot(path=str(shots / "queue.png"))

    page.get_by_role("button", name="Purge waiting jobs…").click()
    expect(page.locator(".confirm")).to_contain_text("Delete the 4 waiting job(s)")
    page.get_by_role("link", name="Cancel").click()
    kept = admin.depths(["bulk"])[0]
    page.get_by_role("button", name="Purge waiting jobs…").click()
    page.get_by_role("button", name="Yes, delete for good").click()

    expect(page.locator(".flash.ok")).to_have_text("purged 4 job(s)")
    (after,) = admin.depths(["bulk"])
    assert (kept.ready_total, kept.scheduled) == (3, 1)
    assert (after.ready_total, after.scheduled) == (0, 0)


def test_dead_letters_filter_requeue_and_purge_a_selection(
    page: Page, url: str, app: Any, admin: Admin, worker: None, shots: Path
) -> None:
    declined = [dashboard_tasks.charge.options(queue="dl").delay(str(n)).id for n in range(3)]
    down = dashboard_tasks.flaky.options(queue="dl").delay("mail").id
    _until(lambda: all(_dead(admin, i) for i in [*declined, down]), 20, "four dead jobs")

    page.goto(f"{url}/dead?token={TOKEN}&queue=dl&error=declined")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("ValueError: card")
    page.screenshot(path=str(shots / "dead.png"))
    page.check(f'input[name=ids][value="{declined[0]}"]')
    page.check(f'input[name=ids][value="{declined[1]}"]')
    page.get_by_role("button", name="Purge selected…").click()
    expect(page.locator(".confirm")).to_contain_text("Delete 2 dead job(s)")
    page.get_by_role("button", name="Yes, delete for good").click()
    expect(page.locator(".flash.ok")).to_have_text("purged 2 dead job(s)")
    page.goto(f"{url}/dead?queue=dl&task=shop.flaky")
    page.get_by_role("button", name="Requeue all matching").click()

    expect(page.locator(".flash.ok")).to_have_text("requeued 1 dead job(s)")
    assert admin.find(declined[0]) is None and admin.find(declined[1]) is None
    assert _dead(admin, declined[2])
    _until(lambda: admin.job(down)[1].attempts == 1 and _dead(admin, down), 20, "a second death")


# --------------------------------------------------------------------------- workers, cron


def test_workers_page_lists_the_live_worker_and_cron_its_schedule(
    page: Page, url: str, worker: None, shots: Path
) -> None:
    page.goto(f"{url}/workers?token={TOKEN}")
    row = page.locator("tbody tr", has_text="live, fail")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("live")
    page.screenshot(path=str(shots / "workers.png"))
    page.goto(f"{url}/cron")

    expect(page.locator("tbody tr")).to_contain_text("yearly-report")
    expect(page.locator("tbody tr")).to_contain_text("0 0 1 1 *")


# --------------------------------------------------------------------------- workflows


def _member_statuses(page: Page) -> list[str]:
    return page.locator("#tree .wf-member .status").all_inner_texts()


def test_a_chain_and_a_chord_show_their_trees_with_each_members_status(
    page: Page, url: str, app: Any, worker: None, shots: Path
) -> None:
    add, total = (t.options(queue="wf") for t in (dashboard_tasks.add, dashboard_tasks.total))
    steps = chain(add.s(1, 2), add.s(3)).delay()
    fan = chord(group(add.s(i, i) for i in range(2)), total.s()).delay()
    assert (steps.result(timeout=20), fan.result(timeout=20)) == (6, 2)

    page.goto(f"{url}/workflows?token={TOKEN}")
    page.fill("main input[name=id]", steps.id)
    page.press("main input[name=id]", "Enter")
    expect(page.locator("#workflow-status")).to_have_text("succeeded")
    chain_kinds = page.locator("#tree .wf-kind").all_inner_texts()
    chain_statuses = _member_statuses(page)
    first = page.locator("#tree .wf-member a").first
    first_id = first.inner_text()
    first.click()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    page.locator("#job-workflow").click()
    back_on = page.locator("#workflow").get_attribute("data-workflow")
    page.goto(f"{url}/workflows/{fan.id}")
    page.screenshot(path=str(shots / "workflow.png"))

    assert [k.lower() for k in chain_kinds] == ["chain"]
    assert chain_statuses == ["succeeded", "succeeded"]
    assert first_id == f"wf:{steps.id}:0" and back_on == steps.id
    assert [k.lower() for k in page.locator("#tree .wf-kind").all_inner_texts()] == [
        "chord", "group"
    ]  # fmt: skip
    assert page.locator("#tree .wf-label").all_inner_texts() == ["header", "callback"]
    assert _member_statuses(page) == ["succeeded"] * 3
    assert page.locator("#tree .wf-member b").all_inner_texts() == [
        "shop.add", "shop.add", "shop.total"
    ]  # fmt: skip


def test_the_workflow_page_follows_its_members_live_without_reload(
    page: Page, url: str, app: Any, launch: Callable[..., subprocess.Popen[bytes]], shots: Path
) -> None:
    # Queue "wf-live" has no worker until the pages are open: then one starts, and the pages
    # must follow each member from the event stream alone.
    tasks = (dashboard_tasks.add, dashboard_tasks.charge, dashboard_tasks.total)
    add, charge, total = (t.options(queue="wf-live") for t in tasks)
    steps = chain(add.s(1, 2), add.s(3)).delay()
    fan = chord(group([add.s(1, 1), charge.s("99")]), total.s()).delay()
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/api/" in r.url else None)
    page.goto(f"{url}/workflows/{steps.id}?token={TOKEN}")
    other = page.context.new_page()
    other.goto(f"{url}/workflows/{fan.id}")
    for pg in (page, other):
        expect(pg.locator("#live-dot.on")).to_be_visible()
        pg.evaluate("window.__sameDocument = true")
    before = (_member_statuses(page), _member_statuses(other))

    launch("worker", "tests.dashboard_tasks:app", "-Q", "wf-live", "--log-level", "WARNING")

    statuses = page.locator("#tree .wf-member .status")
    expect(statuses).to_have_text(["succeeded", "succeeded"], timeout=2 * LIVE_MS)
    expect(page.locator("#workflow-status")).to_have_text("succeeded")
    expect(page.get_by_role("button", name="Cancel workflow")).to_have_count(0)
    expect(other.locator("#workflow-status")).to_have_text("failed")
    expect(other.locator("#tree .wf-member .status")).to_have_text(
        ["succeeded", "dead", "cancelled"]
    )
    expect(other.locator("#workflow-error")).to_contain_text("ValueError: card 99 declined")
    expect(other.locator("#workflow-failed")).to_have_text(f"wf:{fan.id}:1")
    other.screenshot(path=str(shots / "workflow-live.png"))

    assert before == (["queued", "pending"], ["queued", "queued", "pending"])
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert other.evaluate("window.__sameDocument") is True
    # Re-read on open and at the workflow's end (once more if events overtook a read): never
    # polled.
    assert 1 <= sum("/api/workflows/" in u for u in fetched) <= 4


def test_a_failed_workflow_shows_the_failed_member_its_error_and_the_steps_never_run(
    page: Page, url: str, app: Any, worker: None
) -> None:
    charge, add = (t.options(queue="wf") for t in (dashboard_tasks.charge, dashboard_tasks.add))
    h = chain(charge.s("77"), add.si(1, 2)).delay()
    _until(lambda: h.status() is WorkflowStatus.FAILED, 20, "the workflow to fail")

    page.goto(f"{url}/workflows/{h.id}?token={TOKEN}")

    expect(page.locator("#workflow-status")).to_have_text("failed")
    expect(page.locator("#workflow-error")).to_contain_text("ValueError: card 77 declined")
    assert _member_statuses(page) == ["dead", "cancelled"]
    assert page.get_by_role("link", name=f"wf:{h.id}:0").count() == 2  # failed-at and the tree
    expect(page.locator("main form[method=post]")).to_have_count(0)  # nothing left to cancel


def test_an_unknown_workflow_id_shows_not_found(page: Page, url: str) -> None:
    missing = page.goto(f"{url}/workflows/never-sent-42?token={TOKEN}")
    malformed = page.goto(f"{url}/workflows/no%7Bbraces%7D")

    assert missing is not None and missing.status == 404
    assert malformed is not None and malformed.status == 404
    expect(page.locator(".flash.bad")).to_contain_text("No workflow")


def test_cancel_a_running_workflow_from_its_page(page: Page, url: str, app: Any) -> None:
    add = dashboard_tasks.add.options(queue="wf-held")  # no worker serves it: stays running
    h = chain(add.s(1, 2), add.s(3)).delay()

    page.goto(f"{url}/workflows/{h.id}?token={TOKEN}")
    before = _member_statuses(page)
    page.get_by_role("button", name="Cancel workflow").click()

    expect(page.locator(".flash.ok")).to_have_text("workflow is cancelled")
    expect(page.locator("#workflow-status")).to_have_text("cancelled")
    assert before == ["queued", "pending"]
    assert _member_statuses(page) == ["cancelled", "cancelled"]
    assert h.status() is WorkflowStatus.CANCELLED


# --------------------------------------------------------------------------- safety


def test_a_wrong_token_gets_401_and_the_right_one_a_cookie(page: Page, url: str) -> None:
    wrong = page.goto(f"{url}/?token=not-the-token-at-all")
    none = httpx.get(f"{url}/", timeout=5)
    bad_bearer = httpx.get(f"{url}/", headers={"Authorization": "Bearer nope"}, timeout=5)
    right = page.goto(f"{url}/dead?token={TOKEN}")
    later = page.goto(f"{url}/workers")  # the cookie, no token in the URL

    assert wrong is not None and wrong.status == 401
    assert none.status_code == bad_bearer.status_code == 401
    assert right is not None and right.status == 200 and "token=" not in page.url
    assert later is not None and later.status == 200


def test_basic_auth_in_the_browser_asks_for_credentials_and_takes_only_the_right_ones(
    browser: Browser, server: Server, app: Any, admin: Admin
) -> None:
    basic = server(token=None, basic_auth=f"ops:{TOKEN}")
    later = dashboard_tasks.add.options(queue="basic").schedule(3600, 1)
    contexts = {
        "none": browser.new_context(),
        "right": browser.new_context(http_credentials={"username": "ops", "password": TOKEN}),
        "wrong": browser.new_context(http_credentials={"username": "ops", "password": "nope"}),
    }
    try:
        pages = {name: ctx.new_page() for name, ctx in contexts.items()}
        anonymous: list[Any] = []
        pages["none"].on("response", lambda r: anonymous.append(r))
        # Headless, with no credentials to offer to the challenge, chromium drops the navigation
        # (a person would see the login prompt); the answer it got was the 401.
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            pages["none"].goto(f"{basic}/")
        wrong = pages["wrong"].goto(f"{basic}/")
        page = pages["right"]
        right = page.goto(f"{basic}/")
        expect(page.locator("#live-dot.on")).to_be_visible()  # the event stream is let in too
        expect(_cell(page, "basic", "scheduled")).to_have_text("1")
        page.goto(f"{basic}/jobs/{later.id}")
        page.get_by_role("button", name="Cancel job").click()  # a POST, CSRF and all
        expect(page.locator(".flash.ok")).to_contain_text("cancelled")
    finally:
        for ctx in contexts.values():
            ctx.close()

    assert [r.status for r in anonymous] == [401]
    assert anonymous[0].headers["www-authenticate"] == 'Basic realm="taskforge"'
    assert wrong is not None and wrong.status == 401
    assert right is not None and right.status == 200
    assert admin.job(later.id)[1].status is JobStatus.CANCELLED


def test_read_only_shows_no_action_and_refuses_posts(
    page: Page, server: Server, app: Any, admin: Admin, worker: None
) -> None:
    dead = dashboard_tasks.charge.options(queue="ro").delay("1").id
    waiting = dashboard_tasks.add.options(queue="slow").delay(1).id
    _until(lambda: _dead(admin, dead), 20, "the job to die")
    held = chain(dashboard_tasks.add.options(queue="slow").s(1), dashboard_tasks.add.s(2)).delay()
    ro = server(read_only=True, token=None)

    for path in (f"/jobs/{dead}", f"/jobs/{waiting}", "/dead", "/queues/slow",
                 f"/workflows/{held.id}"):  # fmt: skip
        page.goto(f"{ro}{path}")
        expect(page.locator("main form[method=post]")).to_have_count(0)
        expect(page.locator("main button.danger, input[name=ids]")).to_have_count(0)
    expect(page.locator(".badge.ro")).to_have_text("read-only")
    expect(page.locator("#workflow-status")).to_have_text("running")
    refused = httpx.post(f"{ro}/queues/slow/purge", data={"confirmed": "yes"}, timeout=5)
    no_cancel = httpx.post(f"{ro}/workflows/{held.id}/cancel", timeout=5)

    assert refused.status_code == no_cancel.status_code == 403 and "read-only" in refused.text
    assert admin.depths(["slow"])[0].ready_total == 2
    assert held.status() is WorkflowStatus.RUNNING


def test_a_post_without_a_valid_csrf_field_is_refused(url: str, app: Any, admin: Admin) -> None:
    dashboard_tasks.add.options(queue="csrf").delay(1)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    with httpx.Client(base_url=url, headers=auth, timeout=5) as http:
        http.get("/queues/csrf")  # gets the CSRF cookie, as a page visit would
        forged = http.post("/queues/csrf/purge", data={"confirmed": "yes", "csrf": "x" * 64})
        missing = http.post("/queues/csrf/purge", data={"confirmed": "yes"})

    assert forged.status_code == missing.status_code == 403 and "CSRF" in forged.text
    assert admin.depths(["csrf"])[0].ready_total == 1


def test_the_dashboard_refuses_a_public_address_without_authentication(
    env: dict[str, str],
) -> None:
    result = CliRunner().invoke(cli, ["dashboard", "--host", "0.0.0.0"], env=env)

    assert result.exit_code == 2
    assert "refusing to serve the dashboard on '0.0.0.0' without authentication" in result.stderr
    with pytest.raises(ConfigurationError, match="TASKFORGE_DASHBOARD_TOKEN"):
        DashboardConfig().check_bind("10.0.0.7")
    DashboardConfig(token=TOKEN).check_bind("0.0.0.0")  # with a token: allowed
    DashboardConfig().check_bind("::1")


def test_every_asset_is_served_from_the_package(page: Page, url: str) -> None:
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)

    page.goto(f"{url}/?token={TOKEN}")
    page.goto(f"{url}/dead")

    assert outside == []
    assert re.search(r"/static/dashboard\.css", page.content())


def test_the_dashboard_benchmark_prints_every_page_at_a_tiny_scale() -> None:
    script = ROOT / "benchmarks" / "dashboard_bench.py"
    cmd = [sys.executable, str(script), "--queues", "3", "--jobs", "300", "--records", "10",
           "--loads", "2"]  # fmt: skip

    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("\n\n", 1)[1].splitlines()
    assert table[0].split()[:3] == ["page", "median", "ms"]
    assert [row.split()[0] for row in table[1:]] == [
        "/", "/api/overview", "/queues/q000?limit=50", "/dead", "/workers",
        *(row.split()[0] for row in table[6:9]), "live:",
    ]  # fmt: skip
    assert table[6].startswith("/jobs/") and table[7].startswith("/workflows/")
    assert table[8].startswith("/api/workflows/")


def test_the_dashboard_mounts_under_a_path_prefix_of_another_app(app: Any) -> None:
    dashboard = create_app(app.settings, config=DashboardConfig(read_only=True))
    host = Starlette(routes=[Mount("/ops", app=dashboard)])

    async def visit() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            return [await client.get(p) for p in ("/ops/", "/ops/static/dashboard.css",
                                                   "/ops/api/overview")]  # fmt: skip

    # A thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        page, css, api = pool.submit(anyio.run, visit).result()

    assert page.status_code == 200
    assert 'href="/ops/static/dashboard.css"' in page.text and 'href="/ops/dead"' in page.text
    assert 'data-base="/ops"' in page.text  # the live script's stream is under the prefix too
    assert css.status_code == 200 and api.json()["queues"] is not None


def test_a_host_app_runs_the_dashboard_lifespan_as_its_own(app: Any) -> None:
    dashboard = create_app(app.settings, config=DashboardConfig(read_only=True))
    host = Starlette(
        routes=[Mount("/ops", app=dashboard)], lifespan=dashboard.router.lifespan_context
    )

    async def visit() -> int:
        # The README's embedding: the host hands itself to the dashboard's lifespan.
        async with host.router.lifespan_context(host):
            transport = httpx.ASGITransport(app=host)
            async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
                return (await client.get("/ops/")).status_code

    with ThreadPoolExecutor(1) as pool:
        status = pool.submit(anyio.run, visit).result()

    assert status == 200
