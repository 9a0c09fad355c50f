"""The dashboard while its Redis is down: every page says so (503), never a bare 500."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

pytest.importorskip("starlette")

from starlette.applications import Starlette
from starlette.routing import Mount

from taskforge import Taskforge
from taskforge.dashboard import DashboardConfig, create_app
from tests.redis_server import RedisServer

PAGES = ["/", "/live", "/workers", "/queues/default", "/jobs/abc", "/dead"]
APIS = ["/api/overview", "/api/jobs/abc"]  # /api/health reports the outage itself


@pytest.fixture
def down_app(prefix: str) -> Iterator[Taskforge]:
    """An app whose Redis was real, had a job, and has just been killed."""
    server = RedisServer().start()
    app = Taskforge()
    app.configure(redis_url=server.url, prefix=prefix, socket_connect_timeout_s=0.5)
    try:

        @app.task(name="down.noop")
        def noop() -> None: ...

        noop.delay()
        server.kill()
        yield app
    finally:
        app.client.close()
        server.cleanup()


def visit(host: Starlette, paths: list[str]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=host, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            return [await client.get(p) for p in paths]

    return anyio.run(go)


def test_pages_say_redis_is_down_with_503_not_a_500(down_app: Taskforge) -> None:
    dashboard = create_app(down_app.settings, config=DashboardConfig())

    responses = visit(Starlette(routes=[Mount("/ops", app=dashboard)]),
                      [f"/ops{p}" for p in PAGES + APIS])  # fmt: skip

    for path, response in zip(PAGES + APIS, responses, strict=True):
        assert response.status_code == 503, (path, response.status_code, response.text[:300])
        assert "Traceback" not in response.text
        if path.startswith("/api/"):
            assert "Redis is not answering" in response.json()["error"], path
        else:
            assert "Redis is not answering" in response.text, path
            assert 'href="/ops/static/dashboard.css"' in response.text  # the site's own page
