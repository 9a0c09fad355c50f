"""``taskforge dashboard``: a web page over the admin API (the ``dashboard`` extra).

Starlette + Jinja2 templates, with every asset served from the package (it works offline).
It holds no Redis code of its own: every read and action is a call on
:class:`taskforge.AsyncAdmin`, the same API the CLI uses.
"""

from taskforge.dashboard.app import create_app
from taskforge.dashboard.config import DashboardConfig, is_loopback

__all__ = ["DashboardConfig", "create_app", "is_loopback"]
