"""Health checks: the integration guide's health dict, plus queue depths and warnings."""

from __future__ import annotations

import time
from typing import Any

from taskforge.broker import AsyncBroker
from taskforge.errors import BrokerError
from taskforge.worker import server_warnings


async def health_check(broker: AsyncBroker, *, queues: list[str] | None = None) -> dict[str, Any]:
    """The guide's dict (``status, connected, latency_ms, version, used_memory,
    connected_clients, uptime_seconds``) plus ``queues`` (depths) and ``warnings``.

    Never raises for an unreachable Redis: that is ``status: "unhealthy", connected: False``
    with the reason in ``error``.
    """
    started = time.perf_counter()
    try:
        info = await _server_info(broker)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            save = await broker.run(broker.ops.config_get("save"))
        except BrokerError:
            save = None
        names = queues if queues is not None else await broker.run(broker.ops.known_queues())
        depths = {}
        for q in names:
            c = await broker.run(broker.ops.counts(q))
            depths[q] = {
                **{p.value: n for p, n in c.ready.items()},
                "scheduled": c.scheduled,
                "inflight": c.inflight,
                "dead": c.dead,
            }
    except BrokerError as exc:
        return {"status": "unhealthy", "connected": False, "error": str(exc)}
    warnings = server_warnings(info, save)
    return {
        "status": "degraded" if warnings else "healthy",
        "connected": True,
        "latency_ms": round(latency_ms, 2),
        "version": info.get("redis_version"),
        "used_memory": info.get("used_memory_human"),
        "connected_clients": info.get("connected_clients"),
        "uptime_seconds": info.get("uptime_in_seconds"),
        "queues": depths,
        "warnings": warnings,
    }


async def _server_info(broker: AsyncBroker) -> dict[str, Any]:
    if broker.settings.is_memory:  # the embedded server has no INFO: answer for it
        await broker.run(broker.ops.known_queues())
        return {"redis_version": "7.2 (embedded memory://)", "connected_clients": 1}
    return await broker.run(broker.ops.server_info())
