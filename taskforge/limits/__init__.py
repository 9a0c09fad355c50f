"""Per-task limits: rate (job starts per window) and concurrency (running jobs), cluster-wide.

- :mod:`taskforge.limits.spec`: what a limit says (``rate_limit="100/m"``). Pure: no Redis.
- :mod:`taskforge.limits.acquire`: how a worker takes and gives back its jobs' limits in Redis.

The package re-exports the spec only: importing it connects to nothing and pulls in no Redis
layer (``taskforge.task`` reads the spec; the worker imports ``acquire`` itself).
"""

from __future__ import annotations

from taskforge.limits.spec import RateLimit, rate_limit_spec

__all__ = ["RateLimit", "rate_limit_spec"]
