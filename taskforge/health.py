"""Health checks: the integration guide's health dict, plus queue depths and warnings."""

from __future__ import annotations

import time
from typing import Any

from taskforge.broker import AsyncBroker
from taskforge.errors import BrokerError
from taskforge.worker import node_warnings, read_nodes


async def health_check(broker: AsyncBroker, *, queues: list[str] | None = None) -> dict[str, Any]:
    """The guide's dict (``status, connected, latency_ms, version, used_memory,
    connected_clients, uptime_seconds``) plus ``queues`` (depths) and ``warnings``.

    Never raises for an unreachable Redis: that is ``status: "unhealthy", connected: False``
    with the reason in ``error``.
    """
    started = time.perf_counter()
    try:
        if broker.settings.is_memory:  # the embedded server has no INFO: answer for it
            await broker.run(broker.ops.known_queues())
            infos = {"": {"redis_version": "7.2 (embedded memory://)", "connected_clients": 1}}
            saves: dict[str, str | None] = {}
        else:
            infos, saves = await read_nodes(broker)
        latency_ms = (time.perf_counter() - started) * 1000
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
    warnings = node_warnings(infos, saves)
    report: dict[str, Any] = {
        "status": "degraded" if warnings else "healthy",
        "connected": True,
        "latency_ms": round(latency_ms, 2),
        **_summary(list(infos.values())),
        "queues": depths,
        "warnings": warnings,
    }
    if len(infos) > 1:  # a cluster: each primary's own figures too
        report["nodes"] = {node: _summary([info]) for node, info in infos.items()}
    return report


def _summary(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """The guide's fields over one server, or over a cluster's primaries (the oldest version,
    the total memory and clients, the shortest uptime)."""
    if len(infos) == 1:
        (info,) = infos
        return {
            "version": info.get("redis_version"),
            "used_memory": info.get("used_memory_human"),
            "connected_clients": info.get("connected_clients"),
            "uptime_seconds": info.get("uptime_in_seconds"),
        }
    versions = [str(i.get("redis_version", "0")) for i in infos]
    return {
        "version": min(versions, key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit())),
        "used_memory": f"{sum(int(i.get('used_memory', 0)) for i in infos) / 2**20:.2f}M",
        "connected_clients": sum(int(i.get("connected_clients", 0)) for i in infos),
        "uptime_seconds": min(int(i.get("uptime_in_seconds", 0)) for i in infos),
    }
