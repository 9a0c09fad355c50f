"""The dashboard as an ASGI application: routes, lifespan, the Server-Sent Events stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from taskforge.admin import AsyncAdmin
from taskforge.dashboard import actions, pages, workflows
from taskforge.dashboard.config import DashboardConfig
from taskforge.dashboard.live import EventFilter, Hub
from taskforge.dashboard.security import AuthMiddleware
from taskforge.dashboard.state import HERE, Dashboard
from taskforge.errors import BrokerError, TaskforgeError
from taskforge.registry import Registry
from taskforge.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    config: DashboardConfig | None = None,
    registry: Registry | None = None,
) -> Starlette:
    """The dashboard for the Redis ``settings`` name (default: from the environment).

    ``registry`` (an app's, ``app.registry``) lets the cron page list periodic tasks. Mount it
    in your own Starlette/FastAPI app under a prefix with ``Mount("/taskforge", app=...)``; run
    its lifespan from yours (``dashboard.router.lifespan_context``) to share one live
    subscription among all pages, else each live page subscribes on its own.
    """
    config = config or DashboardConfig.from_env()
    dash = Dashboard.build(AsyncAdmin(settings or Settings.from_env()), config, registry)
    app = Starlette(
        routes=_routes(),
        middleware=[Middleware(AuthMiddleware, config=config)],
        exception_handlers={BrokerError: _broker_down},
        # Bound to this dashboard, not to the app that runs it: a host app that passes
        # ``dashboard.router.lifespan_context`` as its own lifespan hands in itself.
        lifespan=lambda _host: _lifespan(dash),
    )
    app.state.dashboard = dash
    return app


def _routes() -> list[Route | Mount]:
    post = ["POST"]
    return [
        Route("/", pages.overview),
        Route("/api/overview", pages.overview_json),
        Route("/api/health", pages.health_json),
        Route("/api/jobs/{job_id:path}", pages.job_json),
        Route("/api/workflows/{wid}", workflows.workflow_json),
        Route("/events", events),
        Route("/live", pages.live),
        Route("/jobs", pages.job_search),
        Route("/jobs/{job_id:path}/cancel", actions.action(actions.cancel_job), methods=post),
        Route("/jobs/{job_id:path}/retry", actions.action(actions.retry_job), methods=post),
        Route("/jobs/{job_id:path}", pages.job),
        Route("/queues/{name}", pages.queue),
        Route("/queues/{name}/purge", actions.action(actions.purge_queue), methods=post),
        Route("/dead", pages.dead),
        Route("/dead/requeue", actions.action(actions.dead_requeue), methods=post),
        Route("/dead/purge", actions.action(actions.dead_purge), methods=post),
        Route("/workers", pages.workers),
        Route("/cron", pages.cron),
        Route("/workflows", workflows.workflow_search),
        Route("/workflows/{wid}/cancel", actions.action(workflows.cancel_workflow), methods=post),
        Route("/workflows/{wid}", workflows.workflow),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


async def _broker_down(request: Request, exc: Exception) -> Response:
    """Redis unreachable (or refusing): a page that says so with 503, never a bare 500."""
    message = f"Redis is not answering, so this cannot be shown now: {exc}"
    base = request.scope.get("root_path", "").rstrip("/")
    if request.url.path.removeprefix(base).startswith("/api/"):
        return JSONResponse({"error": message}, 503)
    d: Dashboard = request.app.state.dashboard
    return d.render(request, "error.html", {"page": "", "message": message}, 503)


@asynccontextmanager
async def _lifespan(dash: Dashboard) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(dash.hub.run)
        tg.start_soon(_sample_depths, dash)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
    with anyio.CancelScope(shield=True):
        await dash.admin.aclose()


async def _sample_depths(dash: Dashboard) -> None:
    # The charts' depth line: one sample a minute (a few commands per queue), from the server.
    while True:
        # A missed sample is a gap in a chart, no more: nothing to stop for.
        with suppress(TaskforgeError):
            await dash.admin.record_depths((await dash.admin.overview(minutes=1)).depths)
        await anyio.sleep(60)


async def events(request: Request) -> Response:
    """``text/event-stream`` of job events (filters: ``queue``, ``task``, ``status``, ``job``,
    ``workflow`` — each repeatable or comma-separated), the named workflows' events, and
    overview pushes."""

    def wanted(name: str) -> frozenset[str]:
        values = [v for raw in request.query_params.getlist(name) for v in raw.split(",")]
        return frozenset(v.strip() for v in values if v.strip())

    flt = EventFilter(wanted("queue"), wanted("task"), wanted("status"), wanted("job"),
                      wanted("workflow"))  # fmt: skip
    return EventStream(pages.dash(request).hub, flt)


class EventStream(Response):
    """Streams a page's events until the browser goes away.

    When the hub is not running (the host app did not run the dashboard's lifespan), the
    stream runs a hub of its own for this page.
    """

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, flt: EventFilter):
        # No Content-Length: the body never ends (Response.__init__ would declare 0).
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        self.hub = hub
        self.flt = flt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        hub = self.hub if self.hub.running else Hub(self.hub.admin, self.hub.overview)
        async with anyio.create_task_group() as tg:
            if not hub.running:
                tg.start_soon(hub.run)
            tg.start_soon(_until_disconnect, receive, tg.cancel_scope)
            async for chunk in hub.stream(self.flt):
                await send({"type": "http.response.body", "body": chunk.encode(),
                            "more_body": True})  # fmt: skip


async def _until_disconnect(receive: Receive, scope: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


__all__ = ["EventStream", "create_app"]
