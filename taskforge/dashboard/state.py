"""What every page handler shares: the admin API, settings, CSRF, templates, the live hub."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from taskforge.admin import RATE_WINDOW_MIN, AsyncAdmin, Overview
from taskforge.dashboard.charts import overview_charts
from taskforge.dashboard.config import DashboardConfig
from taskforge.dashboard.live import Hub
from taskforge.dashboard.security import CSRF_COOKIE, CSRF_FIELD, Csrf
from taskforge.registry import Registry

HERE = Path(__file__).parent


@dataclass(eq=False)
class Dashboard:
    """One dashboard: its operator API, configuration and shared machinery."""

    admin: AsyncAdmin
    config: DashboardConfig
    registry: Registry | None
    csrf: Csrf
    templates: Jinja2Templates
    hub: Hub

    @classmethod
    def build(
        cls, admin: AsyncAdmin, config: DashboardConfig, registry: Registry | None
    ) -> Dashboard:
        """Wire the parts together (connects to nothing)."""
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters.update(when=when, ago=ago, pretty=pretty)
        templates = Jinja2Templates(env=env)
        dash = cls(admin, config, registry, Csrf(), templates, Hub(admin, _placeholder))
        dash.hub.overview = dash.live_overview
        return dash

    async def live_overview(self) -> dict[str, Any]:
        """Queue counts, rates and charts of the last hour, as the overview page shows them."""
        return self.overview_json(await self.admin.overview(minutes=60))

    def overview_json(self, overview: Overview) -> dict[str, Any]:
        """An overview as the page and its live pushes use it (charts drawn)."""
        data = overview.to_json()
        data["charts"] = [c.to_json() for c in overview_charts(overview.series.points)]
        data["rate_window_min"] = RATE_WINDOW_MIN
        return data

    def render(
        self, request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        """A page, with what every page needs (base path, CSRF field, read-only flag)."""
        nonce, new = self.csrf.cookie_value(request)
        base = request.scope.get("root_path", "").rstrip("/")
        full = {
            "base": base,
            "csrf_field": CSRF_FIELD,
            "csrf": self.csrf.token(nonce),
            "read_only": self.config.read_only,
            "notice": request.query_params.get("notice", ""),
            "problem": request.query_params.get("problem", ""),
            **context,
        }
        response = self.templates.TemplateResponse(request, name, full, status_code=status_code)
        if new:
            response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict",
                                path=base or "/")  # fmt: skip
        return response


async def _placeholder() -> dict[str, Any]:
    return {}


def back(request: Request, path: str, **params: str) -> RedirectResponse:
    """303 to ``path`` under the app's base path, with a notice or problem to show."""
    base = request.scope.get("root_path", "").rstrip("/")
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(f"{base}{path}" + (f"?{query}" if query else ""), 303)


def when(ms: int | float | None) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM:SS`` UTC (``-`` when unknown)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(seconds: float | None) -> str:
    """A duration for people: ``4.2s``, ``3.0m``, ``1.5h``, ``2.0d``."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def pretty(value: Any, cap_bytes: int = 4096) -> str:
    """``value`` as indented JSON, cut at ``cap_bytes`` with a note saying how much was cut."""
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    raw = text.encode()
    if len(raw) <= cap_bytes:
        return text
    cut = raw[:cap_bytes].decode(errors="ignore")
    return f"{cut}\n… ({len(raw) - cap_bytes:,} more bytes not shown)"


__all__ = ["Dashboard", "ago", "back", "pretty", "when"]
