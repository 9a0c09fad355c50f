"""The dashboard's pages (GET): overview, live feed, jobs, queues, dead letters, workers, cron."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from taskforge.dashboard.charts import overview_charts
from taskforge.dashboard.state import Dashboard, back
from taskforge.deadletters import DeadFilter
from taskforge.errors import BrokerError, ConfigurationError, TaskforgeError
from taskforge.job import PRIORITY_ORDER, JobRecord, JobStatus
from taskforge.workflow.graph import parse_member_id

#: Statuses a job can still be cancelled in.
CANCELLABLE = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING,
                         JobStatus.ACTIVE})  # fmt: skip
#: Dead jobs listed on one page.
DEAD_PAGE = 100


def dash(request: Request) -> Dashboard:
    """The dashboard this request belongs to."""
    d: Dashboard = request.app.state.dashboard
    return d


async def overview(request: Request) -> Response:
    """Every queue's counts and rates, the last hour's charts, and Redis health."""
    d = dash(request)
    overview = await d.admin.overview(minutes=60)
    data = d.overview_json(overview)
    health = await d.admin.health(depths=overview.depths)
    return d.render(request, "overview.html", {
        "page": "overview", "rows": data["queues"], "rate_window_min": data["rate_window_min"],
        "charts": overview_charts(data["series"]["points"]), "health": health,
    })  # fmt: skip


async def overview_json(request: Request) -> Response:
    """The overview as JSON (what the live page is pushed)."""
    return JSONResponse(await dash(request).live_overview())


async def job_json(request: Request) -> Response:
    """A job's status (and queue), or 404: what a job page re-reads when its stream opens."""
    found = await dash(request).admin.find(request.path_params["job_id"])
    if found is None:
        return JSONResponse({"status": None}, 404)
    return JSONResponse({"queue": found[0], "status": found[1].status.value})


async def health_json(request: Request) -> Response:
    """The health report, as ``taskforge health --json`` prints it."""
    return JSONResponse(await dash(request).admin.health())


async def live(request: Request) -> Response:
    """The live event feed, filtered by queue, task and status."""
    d = dash(request)
    return d.render(request, "live.html", {
        "page": "live", "queues": await d.admin.queues(),
        "statuses": [s.value for s in JobStatus],
        "flt": {k: request.query_params.get(k, "") for k in ("queue", "task", "status")},
    })  # fmt: skip


async def job_search(request: Request) -> Response:
    """``?id=`` goes to that job's page; an empty search shows the search form."""
    job_id = request.query_params.get("id", "").strip()
    if job_id:
        return back(request, f"/jobs/{job_id}")
    return dash(request).render(request, "job_search.html", {"page": "jobs", "missing": ""})


async def job(request: Request) -> Response:
    """One job: envelope (capped), timeline, attempts, error and traceback, progress, result."""
    d = dash(request)
    job_id = request.path_params["job_id"]
    found = await d.admin.find(job_id)
    if found is None:
        return d.render(request, "job_search.html", {"page": "jobs", "missing": job_id}, 404)
    queue, record = found
    return d.render(request, "job.html", {
        "page": "jobs", "queue": queue, "r": record, "timeline": timeline(record),
        "envelope": record.job.model_dump(mode="json") if record.job else None,
        "cap": d.config.envelope_cap_bytes,
        "can_cancel": record.status in CANCELLABLE, "can_retry": record.status is JobStatus.DEAD,
        "member_of": parse_member_id(record.id),
    })  # fmt: skip


def timeline(r: JobRecord) -> list[tuple[str, int]]:
    """The record's moments, in order: created, enqueued, runs at, started, finished."""
    moments = [("created", r.created_ms), ("enqueued", r.enqueued_ms), ("started", r.started_ms),
               (r.status.value, r.finished_ms)]  # fmt: skip
    if r.status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
        moments.append(("runs at", r.run_at_ms))
    return sorted(((name, ms) for name, ms in moments if ms), key=lambda m: m[1])


async def queue(request: Request) -> Response:
    """A queue's ready (per priority) and scheduled jobs, paged."""
    d = dash(request)
    name = request.path_params["name"]
    offset = _int(request, "offset", 0, 0, 10**9)
    limit = _int(request, "limit", 50, 1, 500)
    try:
        page = await d.admin.listing(name, offset=offset, limit=limit)
    except ConfigurationError as exc:
        return d.render(request, "error.html", {"page": "queues", "message": str(exc)}, 400)
    more = any(len(jobs) == limit for jobs in page.sections.values())
    return d.render(request, "queue.html", {
        "page": "queues", "name": name, "listing": page, "offset": offset, "limit": limit,
        "more": more, "priorities": [p.value for p in PRIORITY_ORDER],
    })  # fmt: skip


async def dead(request: Request) -> Response:
    """Dead letters matching the filters, oldest first, with their reason."""
    d = dash(request)
    form = _dead_form(request)
    try:
        flt = DeadFilter.parse(
            task=form["task"],
            error=form["error"],
            older_than=form["older_than"],
            newer_than=form["newer_than"],
        )
        queues = [form["queue"]] if form["queue"] else None
        found = await d.admin.dead_list(queues=queues, flt=flt, limit=DEAD_PAGE)
    except BrokerError:
        raise  # Redis is down: the app's handler says so (503), not a bad filter's 400
    except TaskforgeError as exc:
        return d.render(request, "error.html", {"page": "dead", "message": str(exc)}, 400)
    return d.render(request, "dead.html", {
        "page": "dead", "jobs": found, "form": form, "limit": DEAD_PAGE,
        "queues": await d.admin.queues(), "filtered": flt.active,
    })  # fmt: skip


def _dead_form(request: Request) -> dict[str, str]:
    keys = ("queue", "task", "error", "older_than", "newer_than")
    return {k: request.query_params.get(k, "").strip() for k in keys}


async def workers(request: Request) -> Response:
    """Every worker with a heartbeat: live ones, and lost ones marked as such."""
    d = dash(request)
    found = await d.admin.workers()
    now = time.time()
    rows: list[dict[str, Any]] = [
        {**w.info, "id": w.id, "lost": w.lost, "seen_ago_s": now - w.last_seen,
         "up_s": now - float(w.info.get("started", now))}
        for w in found
    ]  # fmt: skip
    return d.render(request, "workers.html", {"page": "workers", "workers": rows})


async def cron(request: Request) -> Response:
    """Each periodic task of the app the dashboard was started with: schedule, last, next."""
    d = dash(request)
    periodics = d.registry.periodics() if d.registry is not None else None
    rows = await d.admin.cron(periodics) if periodics else []
    return d.render(request, "cron.html", {"page": "cron", "rows": rows,
                                           "no_app": d.registry is None})  # fmt: skip


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return min(high, max(low, value))


__all__ = ["CANCELLABLE", "DEAD_PAGE", "cron", "dash", "dead", "health_json", "job", "job_json",
           "job_search", "live", "overview", "overview_json", "queue", "timeline",
           "workers"]  # fmt: skip
