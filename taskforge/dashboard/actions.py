"""The dashboard's actions (POST): cancel, retry, purge a queue, requeue or purge dead letters.

Every action is a POST that must carry the CSRF field, is refused in read-only mode, and runs
an operation of the admin API on jobs that already exist: nothing here can enqueue a new task.
Destructive ones (purges) first answer with a confirmation page; only its confirmed POST acts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from taskforge.dashboard.pages import dash
from taskforge.dashboard.state import back
from taskforge.deadletters import DeadFilter, DeadSelection
from taskforge.errors import ConfigurationError, TaskforgeError

Handler = Callable[[Request, FormData], Awaitable[Response]]


def action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a POST handler: refuse it read-only or without a valid CSRF field."""

    async def guarded(request: Request) -> Response:
        d = dash(request)
        if d.config.read_only:
            return PlainTextResponse("403 forbidden: the dashboard is read-only", 403)
        form = await request.form()
        field = form.get("csrf")
        if not d.csrf.valid(request, field if isinstance(field, str) else None):
            return PlainTextResponse("403 forbidden: missing or stale CSRF token; reload", 403)
        try:
            return await handler(request, form)
        except TaskforgeError as exc:
            return back(request, _referrer(request), problem=str(exc))

    return guarded


def _referrer(request: Request) -> str:
    base = request.scope.get("root_path", "").rstrip("/")
    ref = request.headers.get("referer", "")
    path = ref.split("://", 1)[-1].partition("/")[2]
    path = "/" + path.partition("?")[0]
    return path[len(base) :] if base and path.startswith(base) else path


async def cancel_job(request: Request, form: FormData) -> Response:
    """Cancel one job (a running one is asked to stop by its worker)."""
    job_id = request.path_params["job_id"]
    status = await dash(request).admin.cancel(job_id)
    return back(request, f"/jobs/{job_id}", notice=f"cancel requested: job is {status.value}")


async def retry_job(request: Request, form: FormData) -> Response:
    """Requeue one dead job with fresh attempts."""
    job_id = request.path_params["job_id"]
    result = await dash(request).admin.dead_requeue(ids=[job_id])
    notice = "requeued" if result.total else "not requeued: the job is no longer dead"
    return back(request, f"/jobs/{job_id}", notice=notice)


async def purge_queue(request: Request, form: FormData) -> Response:
    """Ask to confirm, then purge every waiting job of a queue."""
    d = dash(request)
    name = request.path_params["name"]
    if form.get("confirmed") != "yes":
        (depth,) = (await d.admin.overview([name], minutes=1)).depths
        count = depth.ready_total + depth.scheduled
        return d.render(request, "confirm.html", {
            "page": "queues", "title": f"Purge queue {name}?",
            "what": f"Delete the {count} waiting job(s) of queue {name} (ready and scheduled) "
                    "for good. Running jobs and dead letters are kept.",
            "fields": [], "cancel_to": f"/queues/{name}",
        })  # fmt: skip
    purged = await d.admin.purge_queue(name)
    return back(request, f"/queues/{name}", notice=f"purged {purged.total} job(s)")


async def dead_requeue(request: Request, form: FormData) -> Response:
    """Requeue dead jobs: the ids ticked, or every match of the filter sent."""
    selection = await _selection(request, form)
    result = await dash(request).admin.dead_requeue(selection)
    return back(request, "/dead", notice=_done("requeued", result.total, result.skipped))


async def dead_purge(request: Request, form: FormData) -> Response:
    """Ask to confirm, then delete dead jobs (the ids ticked, or every match of the filter)."""
    d = dash(request)
    selection = await _selection(request, form)
    if form.get("confirmed") != "yes":
        fields = [(k, v) for k, v in form.multi_items() if k not in ("csrf", "confirmed")]
        return d.render(request, "confirm.html", {
            "page": "dead", "title": f"Purge {selection.count} dead job(s)?",
            "what": f"Delete {selection.count} dead job(s) for good: their records, errors and "
                    "tracebacks. A job requeued meanwhile is kept.",
            "fields": fields, "cancel_to": "/dead",
        })  # fmt: skip
    result = await d.admin.dead_purge(selection)
    return back(request, "/dead", notice=_done("purged", result.total, result.skipped))


async def _selection(request: Request, form: FormData) -> DeadSelection:
    ids = [v for v in form.getlist("ids") if isinstance(v, str) and v]
    admin = dash(request).admin
    if form.get("scope") == "filter":
        flt = DeadFilter.parse(**{k: _text(form, k) for k in
                                  ("task", "error", "older_than", "newer_than")})  # fmt: skip
        queue = _text(form, "queue")
        return await admin.dead_select(flt=flt, every=True, queues=[queue] if queue else None)
    if not ids:
        raise ConfigurationError("tick at least one job, or act on the filter's matches")
    return await admin.dead_select(ids=ids)


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _done(verb: str, total: int, skipped: int) -> str:
    note = f" ({skipped} skipped: no longer dead)" if skipped else ""
    return f"{verb} {total} dead job(s){note}"


__all__ = ["action", "cancel_job", "dead_purge", "dead_requeue", "purge_queue", "retry_job"]
