"""``taskforge dashboard``: serve the web dashboard (the optional ``dashboard`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from taskforge.cli.app import LogLevel, RedisUrl, cli, load_app, setup_logging
from taskforge.cli.output import fail
from taskforge.cli.session import settings_for
from taskforge.errors import ConfigurationError

#: Seconds open requests (live pages' event streams) get when the dashboard is told to stop.
STOP_GRACE_S = 3


@cli.command("dashboard")
def dashboard_command(
    modules: Annotated[
        list[str] | None,
        typer.Argument(help="task modules (pkg.mod[:app]); needed only for the cron page"),
    ] = None,
    redis_url: RedisUrl = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8700,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="hide and refuse every action")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="require this token ($TASKFORGE_DASHBOARD_TOKEN)", show_default=False
        ),
    ] = None,
    basic_auth: Annotated[
        str | None,
        typer.Option(
            "--basic-auth",
            help="user:password ($TASKFORGE_DASHBOARD_BASIC_AUTH)",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Serve the web dashboard (the `dashboard` extra: pip install 'taskforge[dashboard]')."""
    try:
        # Optional dependencies: imported here so the CLI works without the extra.
        import uvicorn

        from taskforge.dashboard import DashboardConfig, create_app
        from taskforge.dashboard.security import LoopbackHostsOnly
    except ImportError as exc:
        extra = "pip install 'taskforge[dashboard]'"
        raise fail(f"the dashboard needs its extra: {extra} ({exc})", 2) from None
    setup_logging(log_level)
    settings = settings_for(redis_url)
    registry = load_app(modules).registry if modules else None
    try:
        config = DashboardConfig.from_env(token=token, basic_auth=basic_auth,
                                          read_only=read_only or None)  # fmt: skip
        config.check_bind(host)
    except ConfigurationError as exc:
        raise fail(str(exc), 2) from None
    app = create_app(settings, config=config, registry=registry)
    mode = " (read-only)" if config.read_only else ""
    typer.echo(f"taskforge dashboard on http://{host}:{port}/ for {settings.masked_url()}{mode}",
               err=True)  # fmt: skip
    # No authentication (so a loopback address): answer only to a loopback name in Host, which
    # a DNS-rebinding page cannot send.
    served = app if config.has_auth else LoopbackHostsOnly(app)
    # A live page's event stream never ends by itself: without a bound, SIGTERM or Ctrl-C would
    # wait for every open tab to close. After it, open streams are cut (the pages reconnect to
    # the next server).
    uvicorn.run(served, host=host, port=port, log_level=log_level.lower(), access_log=False,
                timeout_graceful_shutdown=STOP_GRACE_S)  # fmt: skip


__all__ = ["dashboard_command"]
